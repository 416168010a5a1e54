variable "name" {
  description = "Prefix of the schedules' names, and name of their schedule group and role."
  type        = string
}

variable "schedules" {
  description = "Schedule entries by name, as `cloudq beat --export eventbridge` writes them: queue is a cloudq queue name, input the message body sent on each tick."
  type = map(object({
    schedule_expression          = string
    timezone                     = optional(string, "UTC")
    queue                        = string
    input                        = string
    message_group_id             = optional(string)
    description                  = optional(string)
    enabled                      = optional(bool, true)
    flexible_time_window_minutes = optional(number)
  }))

  validation {
    condition = alltrue([
      for name, s in var.schedules :
      startswith(s.schedule_expression, "cron(") || startswith(s.schedule_expression, "rate(") || startswith(s.schedule_expression, "at(")
    ])
    error_message = "schedule_expression is EventBridge Scheduler's cron(...), rate(...) or at(...)."
  }
}

variable "queue_arns" {
  description = "Queue ARNs by cloudq queue name (e.g. { for k, q in module.queues.queues : k => q.arn }). Only the queues the schedules name are granted."
  type        = map(string)
}

variable "kms_key_arns" {
  description = "Customer managed keys of the target queues (SendMessage needs GenerateDataKey on them)."
  type        = list(string)
  default     = []
}

variable "retry_attempts" {
  description = "How often the scheduler retries a failed delivery to the queue."
  type        = number
  default     = 3
}

variable "tags" {
  description = "Tags for the schedule group and the role."
  type        = map(string)
  default     = {}
}
