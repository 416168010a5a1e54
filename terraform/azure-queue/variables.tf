variable "resource_group_name" {
  description = "Resource group of the namespace (and of the claim-check storage account)."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
}

variable "namespace_name" {
  description = "Service Bus namespace name (globally unique)."
  type        = string
}

variable "sku" {
  description = "Basic, Standard or Premium (Premium allows messages over 256 KB)."
  type        = string
  default     = "Standard"
}

variable "local_auth_enabled" {
  description = "Allow SAS keys. Off: only Entra ID identities (the function's managed identity) get in."
  type        = bool
  default     = false
}

variable "prefix" {
  description = "Queue-name prefix, the `prefix` of the app's servicebus:// URL."
  type        = string
  default     = ""
}

variable "queues" {
  description = "The app's queues by cloudq name, as `cloudq terraform export` writes them (visibility becomes the lock duration, at most 5 minutes; max receives the max delivery count)."
  type = map(object({
    visibility_timeout_seconds = optional(number, 30)
    max_receive_count          = optional(number, 10)
    delay_seconds              = optional(number, 0)
    fifo                       = optional(bool)
  }))

  validation {
    condition     = alltrue([for name, q in var.queues : q.delay_seconds == 0])
    error_message = "Service Bus has no queue-wide delay: delay_seconds must be 0 (cloudq schedules each message itself)."
  }
}

variable "max_size_in_megabytes" {
  description = "Size of each queue."
  type        = number
  default     = 1024
}

variable "default_message_ttl" {
  description = "How long a message may wait before it expires into the dead-letter subqueue (ISO 8601)."
  type        = string
  default     = "P14D"
}

variable "claim_check_storage_account_name" {
  description = "Create this storage account (and a container) for claim checks. Null: none."
  type        = string
  default     = null
}

variable "claim_check_container" {
  description = "Blob container of the claim checks."
  type        = string
  default     = "cloudq"
}

variable "claim_check_expiration_days" {
  description = "Blobs left in the container are deleted after this many days."
  type        = number
  default     = 14
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
