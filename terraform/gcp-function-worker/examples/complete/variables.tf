# --- from `cloudq terraform export` ----------------------------------------------------------
variable "app" {
  description = "The app as cloudq -A takes it; the function's CLOUDQ_APP."
  type        = string
}

variable "queue_prefix" {
  description = "The pubsub:// URL's prefix."
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
}

# --- yours ------------------------------------------------------------------------------------
variable "project" {
  description = "Google Cloud project id."
  type        = string
}

variable "region" {
  description = "Region of the function."
  type        = string
  default     = "us-central1"
}

variable "name" {
  description = "Names the function (<name>-worker)."
  type        = string
}

variable "package_path" {
  description = "The zip from `cloudq deploy package --target gcf`."
  type        = string
}

variable "claim_check_bucket_name" {
  description = "A claim-check bucket to create, or null."
  type        = string
  default     = null
}

variable "schedules" {
  description = "Cloud Scheduler jobs (`cloudq beat --export cloud-scheduler`); {} for none."
  type = map(object({
    schedule  = string
    queue     = string
    input     = string
    time_zone = optional(string, "Etc/UTC")
  }))
  default = {}
}
