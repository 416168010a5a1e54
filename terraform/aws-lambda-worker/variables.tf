variable "function_name" {
  description = "Name of the Lambda function (and of its role and log group)."
  type        = string
}

variable "package_path" {
  description = "The zip built by `cloudq -A APP deploy package --target lambda`. It is reproducible, so an unchanged app does not redeploy."
  type        = string
}

variable "handler" {
  description = "Entry point inside the package (deploy/lambda/handler.py lands at the zip's root)."
  type        = string
  default     = "handler.handler"
}

variable "runtime" {
  description = "Lambda Python runtime; must match the Python the package was built with (compiled wheels)."
  type        = string
  default     = "python3.11"
}

variable "architecture" {
  description = "x86_64 or arm64; must match the package's compiled wheels."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture is x86_64 or arm64."
  }
}

variable "memory_size" {
  description = "Memory in MB (CPU scales with it)."
  type        = number
  default     = 256
}

variable "timeout_seconds" {
  description = "Function timeout; cloudq gives each task the invocation's remaining time less 1 s. The queues' visibility must be at least 6x this."
  type        = number
  default     = 60

  validation {
    condition     = var.timeout_seconds >= 1 && var.timeout_seconds <= 900
    error_message = "timeout_seconds must be between 1 and 900."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions; null: unreserved."
  type        = number
  default     = null
}

variable "app" {
  description = "The app as `cloudq -A` takes it (module or module:attribute), set as CLOUDQ_APP."
  type        = string
}

variable "broker_url" {
  description = "CLOUDQ_BROKER_URL, e.g. aws-queue's broker_url output."
  type        = string
}

variable "result_backend" {
  description = "CLOUDQ_RESULT_BACKEND, e.g. aws-results-table's backend_url output; null: results off."
  type        = string
  default     = null
}

variable "claim_check_url" {
  description = "CLOUDQ_CLAIM_CHECK_URL, e.g. aws-queue's claim_check_url output; null: none."
  type        = string
  default     = null
}

variable "environment" {
  description = "More environment variables for the function (CLOUDQ_* settings...)."
  type        = map(string)
  default     = {}
}

variable "queues" {
  description = "The queues this function consumes, by cloudq name: aws-queue's queues output (arn, dlq_arn, visibility_timeout_seconds are used)."
  type = map(object({
    arn                        = string
    dlq_arn                    = string
    visibility_timeout_seconds = number
  }))
}

variable "send_queue_arns" {
  description = "Other queues the tasks send to (routes, chains) without this function consuming them."
  type        = list(string)
  default     = []
}

variable "results_table_arn" {
  description = "The results table (aws-results-table's table_arn), or null."
  type        = string
  default     = null
}

variable "claim_check_bucket_arn" {
  description = "The claim-check bucket (aws-queue's claim_check_bucket_arn), or null."
  type        = string
  default     = null
}

variable "claim_check_prefix" {
  description = "Only objects under this key prefix are granted."
  type        = string
  default     = "cloudq"
}

variable "kms_key_arns" {
  description = "Customer managed keys of the queues or table (aws-queue's kms_key_arn): Decrypt and GenerateDataKey are granted on these alone."
  type        = list(string)
  default     = []
}

variable "batch_size" {
  description = "Records per invocation (1-10 without a batching window)."
  type        = number
  default     = 10
}

variable "maximum_batching_window_in_seconds" {
  description = "How long the mapping gathers records before invoking (0-300)."
  type        = number
  default     = 0
}

variable "maximum_concurrency" {
  description = "Most concurrent invocations per queue's mapping (2-1000); null: no cap."
  type        = number
  default     = null
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention of the function's log group."
  type        = number
  default     = 14
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
