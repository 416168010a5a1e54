variable "project" {
  description = "Google Cloud project id (the host of the app's pubsub://PROJECT URL)."
  type        = string
}

variable "prefix" {
  description = "Topic/subscription id prefix, the `prefix` of the app's pubsub:// URL."
  type        = string
  default     = ""
}

variable "queues" {
  description = "The app's queues by cloudq name, as `cloudq terraform export` writes them (visibility becomes the ack deadline, max receives the max delivery attempts)."
  type = map(object({
    visibility_timeout_seconds = optional(number, 30)
    max_receive_count          = optional(number, 10)
    delay_seconds              = optional(number, 0)
    fifo                       = optional(bool)
  }))

  validation {
    condition     = alltrue([for name, q in var.queues : q.delay_seconds == 0])
    error_message = "Pub/Sub has no queue-wide delay: delay_seconds must be 0 (cloudq delays each message itself)."
  }
}

variable "pull_subscriptions" {
  description = "Create the pull subscription of each queue (for `cloudq worker`). Off when gcp-function-worker consumes the queues: its push subscriptions take that name."
  type        = bool
  default     = true
}

variable "message_retention_duration" {
  description = "How long a subscription keeps unacknowledged messages."
  type        = string
  default     = "604800s"
}

variable "kms_key_name" {
  description = "Customer managed key for the topics (CMEK); null: Google-managed encryption."
  type        = string
  default     = null
}

variable "claim_check_bucket_name" {
  description = "Create this GCS bucket for claim checks (payloads over 10 MB). Null: no bucket."
  type        = string
  default     = null
}

variable "claim_check_location" {
  description = "Location of the claim-check bucket."
  type        = string
  default     = "US"
}

variable "claim_check_prefix" {
  description = "Object prefix of the claim checks (the path of the app's gs:// claim_check_url)."
  type        = string
  default     = "cloudq"
}

variable "claim_check_expiration_days" {
  description = "Objects under the prefix are deleted after this many days."
  type        = number
  default     = 14
}

variable "labels" {
  description = "Labels for every resource."
  type        = map(string)
  default     = {}
}
