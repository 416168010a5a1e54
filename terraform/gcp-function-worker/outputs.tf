output "function_name" {
  description = "The function's name."
  value       = google_cloudfunctions2_function.this.name
}

output "function_uri" {
  description = "The function's URL (internal ingress only)."
  value       = google_cloudfunctions2_function.this.service_config[0].uri
}

output "service_account_email" {
  description = "The identity the tasks run as."
  value       = google_service_account.runtime.email
}

output "subscription_ids" {
  description = "The push subscriptions by cloudq queue name."
  value       = { for name, s in google_pubsub_subscription.push : name => s.id }
}

output "scheduler_job_ids" {
  description = "Cloud Scheduler jobs by name."
  value       = { for name, j in google_cloud_scheduler_job.this : name => j.id }
}
