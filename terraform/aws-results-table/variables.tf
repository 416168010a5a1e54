variable "name" {
  description = "Table name; the app's result_backend is dynamodb://<name>."
  type        = string
}

variable "point_in_time_recovery" {
  description = "Continuous backups. Results are short-lived (they expire), so off by default."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Refuse DeleteTable (also blocks terraform destroy until turned off)."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "Customer managed key for encryption at rest; null: the AWS managed key (aws/dynamodb)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for the table."
  type        = map(string)
  default     = {}
}
