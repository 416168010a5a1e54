locals {
  environment = merge(
    {
      CLOUDQ_APP        = var.app
      CLOUDQ_BROKER_URL = var.broker_url
      # The function's identity may not create topics: Terraform made them.
      CLOUDQ_CREATE_MISSING_QUEUES = "false"
    },
    var.result_backend == null ? {} : { CLOUDQ_RESULT_BACKEND = var.result_backend },
    var.claim_check_url == null ? {} : { CLOUDQ_CLAIM_CHECK_URL = var.claim_check_url },
    var.environment,
  )
  source_bucket = var.source_bucket == null ? google_storage_bucket.source[0].name : var.source_bucket
  # Topics the tasks publish to: their own queues (retries), the DLQs, and any others named.
  publish_topics = merge(
    { for name, q in var.queues : name => q.topic_name },
    { for name, q in var.queues : "${name}-dlq" => q.dlq_topic_name },
    { for topic in var.send_topic_names : "send:${topic}" => topic },
  )
  pubsub_agent    = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  scheduler_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"
}

data "google_project" "this" {
  project_id = var.project
}

resource "google_service_account" "runtime" {
  project      = var.project
  account_id   = substr("${var.function_name}-run", 0, 30)
  display_name = "cloudq worker ${var.function_name}"
}

resource "google_service_account" "invoker" {
  project      = var.project
  account_id   = substr("${var.function_name}-push", 0, 30)
  display_name = "Pub/Sub push to ${var.function_name}"
}

resource "google_storage_bucket" "source" {
  count = var.source_bucket == null ? 1 : 0

  project                     = var.project
  name                        = "${var.project}-${var.function_name}-source"
  location                    = var.source_bucket_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels
}

resource "google_storage_bucket_object" "package" {
  name   = "${var.function_name}/${filesha256(var.package_path)}.zip"
  bucket = local.source_bucket
  source = var.package_path
}

resource "google_cloudfunctions2_function" "this" {
  project  = var.project
  location = var.region
  name     = var.function_name
  labels   = var.labels

  build_config {
    runtime     = var.runtime
    entry_point = var.entry_point
    source {
      storage_source {
        bucket = local.source_bucket
        object = google_storage_bucket_object.package.name
      }
    }
  }

  service_config {
    available_memory                 = var.available_memory
    timeout_seconds                  = var.timeout_seconds
    max_instance_count               = var.max_instance_count
    min_instance_count               = var.min_instance_count
    max_instance_request_concurrency = 1
    service_account_email            = google_service_account.runtime.email
    # Pub/Sub push counts as internal traffic; nothing else may call the worker.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    environment_variables          = local.environment
  }
}

resource "google_cloud_run_service_iam_member" "invoker" {
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}

# The trigger: one push subscription per queue, named as cloudq names the queue's subscription,
# with the queue module's dead-letter topic and max delivery attempts.
resource "google_pubsub_subscription" "push" {
  for_each = var.queues

  project                    = var.project
  name                       = each.value.subscription_name
  topic                      = each.value.topic_id
  ack_deadline_seconds       = min(600, max(each.value.ack_deadline_seconds, var.timeout_seconds))
  enable_message_ordering    = each.value.ordering
  message_retention_duration = "604800s"
  labels                     = var.labels

  push_config {
    push_endpoint = google_cloudfunctions2_function.this.service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.invoker.email
    }
  }

  dead_letter_policy {
    dead_letter_topic     = each.value.dlq_topic_id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [google_cloud_run_service_iam_member.invoker]
}

# The service agent acknowledges dead-lettered messages on these subscriptions (it publishes to
# the dead-letter topics through gcp-queue's grant).
resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = google_pubsub_subscription.push

  project      = var.project
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# --- the worker's identity: publish to its topics, and the app's data, nothing more ----------
resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.publish_topics

  project = var.project
  topic   = each.value
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_storage_bucket_iam_member" "claim_checks" {
  count = var.claim_check_bucket == null ? 0 : 1

  bucket = var.claim_check_bucket
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.runtime.email}"

  condition {
    title      = "cloudq-claim-checks"
    expression = "resource.name.startsWith(\"projects/_/buckets/${var.claim_check_bucket}/objects/${var.claim_check_prefix}/\")"
  }
}

# Firestore grants exist at project level only; the condition narrows it to the one database.
resource "google_project_iam_member" "results" {
  count = var.firestore_database == null ? 0 : 1

  project = var.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.runtime.email}"

  condition {
    title      = "cloudq-results"
    expression = "resource.name == \"projects/${var.project}/databases/${var.firestore_database}\""
  }
}

# --- Cloud Scheduler: periodic tasks published straight into their queue's topic -------------
resource "google_cloud_scheduler_job" "this" {
  for_each = var.schedules

  project   = var.project
  region    = var.region
  name      = each.key
  schedule  = each.value.schedule
  time_zone = each.value.time_zone

  pubsub_target {
    topic_name = var.queues[each.value.queue].topic_id
    data       = base64encode(each.value.input)
    attributes = each.value.attributes
  }
}

resource "google_pubsub_topic_iam_member" "scheduler_publisher" {
  for_each = toset([for s in var.schedules : s.queue])

  project = var.project
  topic   = var.queues[each.value].topic_name
  role    = "roles/pubsub.publisher"
  member  = local.scheduler_agent
}
