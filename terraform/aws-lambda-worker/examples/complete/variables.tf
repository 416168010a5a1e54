# --- from `cloudq terraform export` ----------------------------------------------------------
variable "app" {
  description = "The app as cloudq -A takes it; the function's CLOUDQ_APP."
  type        = string
}

variable "queue_prefix" {
  description = "The sqs:// URL's prefix."
  type        = string
  default     = ""
}

variable "queues" {
  description = "The app's queues and their settings."
  type = map(object({
    visibility_timeout_seconds = number
    max_receive_count          = number
    delay_seconds              = number
    fifo                       = bool
  }))
}

variable "function_timeout_seconds" {
  description = "Lambda timeout that lets the app's longest task run to its time limit."
  type        = number
}

# --- yours ------------------------------------------------------------------------------------
variable "name" {
  description = "Names the function (<name>-worker), the table (<name>-results) and the schedule group."
  type        = string
}

variable "package_path" {
  description = "The zip from `cloudq deploy package --target lambda`."
  type        = string
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "claim_check_bucket_name" {
  description = "A claim-check bucket to create, or null."
  type        = string
  default     = null
}

variable "queue_kms_key_id" {
  description = "alias/aws/sqs, a customer managed key ARN, or null for SSE-SQS."
  type        = string
  default     = "alias/aws/sqs"
}

variable "batch_size" {
  description = "Records per invocation."
  type        = number
  default     = 10
}

variable "maximum_concurrency" {
  description = "Most concurrent invocations per queue; null: no cap."
  type        = number
  default     = null
}

variable "schedules" {
  description = "EventBridge Scheduler entries (`cloudq beat --export eventbridge`); {} for none."
  type = map(object({
    schedule_expression = string
    queue               = string
    input               = string
    timezone            = optional(string, "UTC")
    message_group_id    = optional(string)
  }))
  default = {}
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
