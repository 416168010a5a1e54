output "queues" {
  description = "Topics and dead-letter topics by cloudq queue name."
  value       = module.queues.queues
}

output "broker_url" {
  description = "CLOUDQ_BROKER_URL for producers."
  value       = module.queues.broker_url
}

output "function_uri" {
  description = "The worker function's URL."
  value       = module.worker.function_uri
}
