variable "resource_group_name" {
  description = "Resource group of the Function App."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
}

variable "name" {
  description = "Name of the Function App (globally unique)."
  type        = string
}

variable "storage_account_name" {
  description = "Name of the Function App's own storage account (3-24 lowercase letters and digits)."
  type        = string
}

variable "package_path" {
  description = "The zip built by `cloudq -A APP deploy package --target azure-functions` (packages under .python_packages, no remote build)."
  type        = string
}

variable "python_version" {
  description = "Functions Python version; must match the Python the package was built with."
  type        = string
  default     = "3.11"
}

variable "sku_name" {
  description = "App Service plan SKU: Y1 (consumption) or EP1-EP3 (premium)."
  type        = string
  default     = "Y1"
}

variable "app" {
  description = "The app as `cloudq -A` takes it, set as CLOUDQ_APP."
  type        = string
}

variable "broker_url" {
  description = "CLOUDQ_BROKER_URL, e.g. azure-queue's broker_url output."
  type        = string
}

variable "result_backend" {
  description = "CLOUDQ_RESULT_BACKEND (azuretable://...), or null: results off."
  type        = string
  default     = null
}

variable "results_table_id" {
  description = "Resource id of the results table (the scope of the table role), or null."
  type        = string
  default     = null
}

variable "claim_check_url" {
  description = "CLOUDQ_CLAIM_CHECK_URL (azure-queue's claim_check_url), or null."
  type        = string
  default     = null
}

variable "claim_check_container_id" {
  description = "Resource id of the claim-check container (azure-queue's output), or null."
  type        = string
  default     = null
}

variable "environment" {
  description = "More app settings (CLOUDQ_* settings...)."
  type        = map(string)
  default     = {}
}

variable "servicebus_namespace_fqdn" {
  description = "azure-queue's namespace_fqdn: the triggers connect to it with the app's managed identity."
  type        = string
}

variable "queues" {
  description = "The queues this function consumes: azure-queue's queues output (id and name are used)."
  type = map(object({
    id   = string
    name = string
  }))
}

variable "send_queue_ids" {
  description = "Resource ids of other queues the tasks send to without this function consuming them."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "schedules" {
  description = "Logic App recurrences by name, as `cloudq beat --export logic-app` writes them: recurrence is Logic Apps' recurrence object as JSON, queue a cloudq queue name of var.queues, input the message body, message_id the Service Bus MessageId (per tick)."
  type = map(object({
    recurrence = string
    queue      = string
    input      = string
    message_id = string
  }))
  default = {}
}
