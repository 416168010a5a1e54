# Names and settings as the cloudq Pub/Sub adapter makes them (cloudq_pubsub.broker.ensure):
# topic and subscription PREFIX+name, dead-letter topic and subscription PREFIX+name-dlq.
locals {
  queues = {
    for name, q in var.queues : name => {
      id     = "${var.prefix}${name}"
      dlq_id = "${var.prefix}${name}-dlq"
      # Pub/Sub's ranges: ack deadline 10..600 s, max delivery attempts 5..100.
      ack_deadline_seconds  = min(600, max(10, ceil(q.visibility_timeout_seconds)))
      max_delivery_attempts = min(100, max(5, q.max_receive_count))
      max_receive_count     = q.max_receive_count
      ordering              = endswith(name, ".fifo")
    }
  }
}

data "google_project" "this" {
  project_id = var.project
}

resource "google_pubsub_topic" "dlq" {
  for_each = local.queues

  project      = var.project
  name         = each.value.dlq_id
  kms_key_name = var.kms_key_name
  labels       = var.labels
}

resource "google_pubsub_subscription" "dlq" {
  for_each = local.queues

  project                    = var.project
  name                       = each.value.dlq_id
  topic                      = google_pubsub_topic.dlq[each.key].id
  message_retention_duration = "604800s"
  labels                     = var.labels

  expiration_policy {
    ttl = "" # never expires when idle
  }
}

resource "google_pubsub_topic" "this" {
  for_each = local.queues

  project      = var.project
  name         = each.value.id
  kms_key_name = var.kms_key_name
  labels       = var.labels
}

resource "google_pubsub_subscription" "this" {
  for_each = var.pull_subscriptions ? local.queues : {}

  project                    = var.project
  name                       = each.value.id
  topic                      = google_pubsub_topic.this[each.key].id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  enable_message_ordering    = each.value.ordering
  message_retention_duration = var.message_retention_duration
  labels                     = merge(var.labels, { "cloudq-max-receive-count" = tostring(each.value.max_receive_count) })

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dlq[each.key].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }
}

# The Pub/Sub service agent moves messages to the dead-letter topic: it must publish there and
# acknowledge on the source subscription. Granted on those resources only.
locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.queues

  project = var.project
  topic   = google_pubsub_topic.dlq[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = google_pubsub_subscription.this

  project      = var.project
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# --- optional claim-check bucket -----------------------------------------------------------
resource "google_storage_bucket" "claim_checks" {
  count = var.claim_check_bucket_name == null ? 0 : 1

  project                     = var.project
  name                        = var.claim_check_bucket_name
  location                    = var.claim_check_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  lifecycle_rule {
    condition {
      age            = var.claim_check_expiration_days
      matches_prefix = ["${var.claim_check_prefix}/"]
    }
    action {
      type = "Delete"
    }
  }
}
