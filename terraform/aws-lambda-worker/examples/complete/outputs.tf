output "queues" {
  description = "The queues and dead-letter queues by cloudq name."
  value       = module.queues.queues
}

output "broker_url" {
  description = "CLOUDQ_BROKER_URL for producers."
  value       = module.queues.broker_url
}

output "result_backend" {
  description = "CLOUDQ_RESULT_BACKEND for producers."
  value       = module.results.backend_url
}

output "claim_check_url" {
  description = "CLOUDQ_CLAIM_CHECK_URL for producers, or null."
  value       = module.queues.claim_check_url
}

output "function_name" {
  description = "The worker function."
  value       = module.worker.function_name
}

output "role_name" {
  description = "The worker's execution role."
  value       = module.worker.role_name
}

output "schedule_arns" {
  description = "Schedules by entry name."
  value       = length(module.schedule) > 0 ? module.schedule[0].schedule_arns : {}
}
