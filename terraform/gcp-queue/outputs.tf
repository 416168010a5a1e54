output "queues" {
  description = "Per cloudq queue name: topic, subscription and dead-letter ids, ack deadline, max delivery attempts. Pass it to gcp-function-worker's queues."
  value = {
    for name, q in local.queues : name => {
      topic_id              = google_pubsub_topic.this[name].id
      topic_name            = google_pubsub_topic.this[name].name
      subscription_name     = q.id
      dlq_topic_id          = google_pubsub_topic.dlq[name].id
      dlq_topic_name        = google_pubsub_topic.dlq[name].name
      dlq_subscription_id   = google_pubsub_subscription.dlq[name].id
      ack_deadline_seconds  = q.ack_deadline_seconds
      max_delivery_attempts = q.max_delivery_attempts
      max_receive_count     = q.max_receive_count
      ordering              = q.ordering
    }
  }
}

output "broker_url" {
  description = "The app's broker URL (CLOUDQ_BROKER_URL)."
  value       = var.prefix == "" ? "pubsub://${var.project}" : "pubsub://${var.project}?prefix=${var.prefix}"
}

output "claim_check_bucket" {
  description = "Name of the claim-check bucket, or null."
  value       = one(google_storage_bucket.claim_checks[*].name)
}

output "claim_check_prefix" {
  description = "Object prefix of the claim checks."
  value       = var.claim_check_prefix
}

output "claim_check_url" {
  description = "The app's claim_check_url (CLOUDQ_CLAIM_CHECK_URL), or null."
  value       = var.claim_check_bucket_name == null ? null : "gs://${var.claim_check_bucket_name}/${var.claim_check_prefix}"
}

output "project_number" {
  description = "The project's number (service agents are named by it)."
  value       = data.google_project.this.number
}
