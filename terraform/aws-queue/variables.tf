variable "queues" {
  description = "The app's queues by cloudq name, as `cloudq terraform export` writes them. A name ending in .fifo is a FIFO queue."
  type = map(object({
    visibility_timeout_seconds = optional(number, 30)
    max_receive_count          = optional(number, 10)
    delay_seconds              = optional(number, 0)
    fifo                       = optional(bool)
    message_retention_seconds  = optional(number, 345600)
    max_message_size           = optional(number, 262144)
  }))

  validation {
    condition     = length(var.queues) > 0
    error_message = "Name at least one queue."
  }
  validation {
    condition     = alltrue([for name, q in var.queues : q.max_receive_count >= 1 && q.max_receive_count <= 1000])
    error_message = "max_receive_count must be between 1 and 1000 (SQS's redrive limit)."
  }
  validation {
    condition     = alltrue([for name, q in var.queues : q.delay_seconds >= 0 && q.delay_seconds <= 900])
    error_message = "delay_seconds must be between 0 and 900."
  }
  validation {
    condition     = alltrue([for name, q in var.queues : q.fifo == null || q.fifo == endswith(name, ".fifo")])
    error_message = "cloudq names FIFO queues x.fifo: fifo must be true exactly for names ending in .fifo."
  }
}

variable "prefix" {
  description = "Queue-name prefix, the `prefix` of the app's sqs:// URL (lets several apps share an account)."
  type        = string
  default     = ""
}

variable "function_timeout_seconds" {
  description = "Timeout of the Lambda function that consumes these queues; visibility is raised to at least 6x it (AWS's rule for event source mappings). Null: no function."
  type        = number
  default     = null
}

variable "dead_letter_retention_seconds" {
  description = "How long dead letters are kept (SQS's maximum, 14 days, by default)."
  type        = number
  default     = 1209600
}

variable "kms_key_id" {
  description = "SSE-KMS key: the AWS managed alias/aws/sqs (default), or a customer managed key's ARN. Null: SSE-SQS (SQS-owned keys)."
  type        = string
  default     = "alias/aws/sqs"

  validation {
    condition     = var.kms_key_id == null || var.kms_key_id == "alias/aws/sqs" || startswith(coalesce(var.kms_key_id, "-"), "arn:")
    error_message = "Give a customer managed key by ARN (an IAM policy can only grant a key by ARN), or use alias/aws/sqs or null."
  }
}

variable "kms_data_key_reuse_period_seconds" {
  description = "How long SQS reuses a data key before calling KMS again (fewer KMS calls, lower cost)."
  type        = number
  default     = 300
}

variable "claim_check_bucket_name" {
  description = "Create this S3 bucket for claim checks (payloads over the queue's size limit). Null: no bucket."
  type        = string
  default     = null
}

variable "claim_check_prefix" {
  description = "Key prefix of the claim-check objects in the bucket (the path of the app's s3:// claim_check_url)."
  type        = string
  default     = "cloudq"
}

variable "claim_check_expiration_days" {
  description = "Objects left under the prefix (bodies of dead letters) are deleted after this many days."
  type        = number
  default     = 14
}

variable "claim_check_force_destroy" {
  description = "Let terraform destroy delete the bucket with objects still in it."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
