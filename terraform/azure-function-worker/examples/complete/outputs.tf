output "queues" {
  description = "Queues by cloudq queue name."
  value       = module.queues.queues
}

output "broker_url" {
  description = "CLOUDQ_BROKER_URL for producers."
  value       = module.queues.broker_url
}

output "function_app_name" {
  description = "The worker Function App."
  value       = module.worker.function_app_name
}
