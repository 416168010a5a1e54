variable "project" {
  description = "Google Cloud project id."
  type        = string
}

variable "region" {
  description = "Region of the function and the scheduler jobs."
  type        = string
}

variable "function_name" {
  description = "Name of the Cloud Function (gen2); its service accounts are named after it."
  type        = string
}

variable "package_path" {
  description = "The zip built by `cloudq -A APP deploy package --target gcf`. Uploaded under its SHA-256, so an unchanged (reproducible) package does not redeploy."
  type        = string
}

variable "source_bucket" {
  description = "Existing bucket for the function's source zip; null: one is created."
  type        = string
  default     = null
}

variable "source_bucket_location" {
  description = "Location of the created source bucket."
  type        = string
  default     = "US"
}

variable "runtime" {
  description = "Cloud Functions Python runtime; must match the Python the package was built with."
  type        = string
  default     = "python311"
}

variable "entry_point" {
  description = "Function in main.py (deploy/gcf/main.py)."
  type        = string
  default     = "handler"
}

variable "available_memory" {
  description = "Memory of each instance."
  type        = string
  default     = "256M"
}

variable "timeout_seconds" {
  description = "Request timeout; a push subscription waits at most 600 s for the answer."
  type        = number
  default     = 60

  validation {
    condition     = var.timeout_seconds >= 1 && var.timeout_seconds <= 600
    error_message = "timeout_seconds must be between 1 and 600 (Pub/Sub's longest ack deadline)."
  }
}

variable "max_instance_count" {
  description = "Most instances at once."
  type        = number
  default     = 10
}

variable "min_instance_count" {
  description = "Instances kept warm."
  type        = number
  default     = 0
}

variable "app" {
  description = "The app as `cloudq -A` takes it, set as CLOUDQ_APP."
  type        = string
}

variable "broker_url" {
  description = "CLOUDQ_BROKER_URL, e.g. gcp-queue's broker_url output."
  type        = string
}

variable "result_backend" {
  description = "CLOUDQ_RESULT_BACKEND (firestore://...), or null: results off."
  type        = string
  default     = null
}

variable "firestore_database" {
  description = "Firestore database holding the results (\"(default)\" or a name); null: none granted."
  type        = string
  default     = null
}

variable "claim_check_url" {
  description = "CLOUDQ_CLAIM_CHECK_URL (gcp-queue's claim_check_url), or null."
  type        = string
  default     = null
}

variable "claim_check_bucket" {
  description = "The claim-check bucket (gcp-queue's claim_check_bucket), or null."
  type        = string
  default     = null
}

variable "claim_check_prefix" {
  description = "Only objects under this prefix are granted."
  type        = string
  default     = "cloudq"
}

variable "environment" {
  description = "More environment variables for the function."
  type        = map(string)
  default     = {}
}

variable "queues" {
  description = "The queues this function consumes: gcp-queue's queues output (create that module with pull_subscriptions = false)."
  type = map(object({
    topic_id              = string
    topic_name            = string
    subscription_name     = string
    dlq_topic_id          = string
    dlq_topic_name        = string
    ack_deadline_seconds  = number
    max_delivery_attempts = number
    ordering              = bool
  }))
}

variable "send_topic_names" {
  description = "Topics of other queues the tasks send to without this function consuming them."
  type        = list(string)
  default     = []
}

variable "schedules" {
  description = "Cloud Scheduler jobs by name, as `cloudq beat --export cloud-scheduler` writes them: queue is a cloudq queue name of var.queues, input the message body."
  type = map(object({
    schedule   = string
    time_zone  = optional(string, "Etc/UTC")
    queue      = string
    input      = string
    attributes = optional(map(string), {})
  }))
  default = {}
}

variable "labels" {
  description = "Labels for every resource that takes them."
  type        = map(string)
  default     = {}
}
