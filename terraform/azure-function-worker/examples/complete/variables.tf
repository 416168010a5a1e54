# --- from `cloudq terraform export` ----------------------------------------------------------
variable "app" {
  description = "The app as cloudq -A takes it; the Function App's CLOUDQ_APP."
  type        = string
}

variable "queue_prefix" {
  description = "The servicebus:// URL's prefix."
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
  description = "A timeout that lets the app's longest task run to its time limit."
  type        = number

  validation {
    condition     = var.function_timeout_seconds <= 600
    error_message = "A consumption-plan function stops after 10 minutes (host.json functionTimeout): shorten the app's time limits or use a premium plan."
  }
}

# --- yours ------------------------------------------------------------------------------------
variable "subscription_id" {
  description = "Azure subscription id."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
  default     = "westeurope"
}

variable "name" {
  description = "Names the resource group, namespace and Function App."
  type        = string
}

variable "host_storage_account_name" {
  description = "The Function App's own storage account name (3-24 lowercase letters and digits)."
  type        = string
}

variable "claim_check_storage_account_name" {
  description = "A claim-check storage account to create, or null."
  type        = string
  default     = null
}

variable "package_path" {
  description = "The zip from `cloudq deploy package --target azure-functions`."
  type        = string
}

variable "schedules" {
  description = "Logic App recurrences (`cloudq beat --export logic-app`); {} for none."
  type = map(object({
    recurrence = string
    queue      = string
    input      = string
    message_id = string
  }))
  default = {}
}
