output "function_name" {
  description = "The function's name."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "The function's ARN."
  value       = aws_lambda_function.this.arn
}

output "role_name" {
  description = "The execution role's name."
  value       = aws_iam_role.this.name
}

output "role_arn" {
  description = "The execution role's ARN."
  value       = aws_iam_role.this.arn
}

output "policy_json" {
  description = "The execution role's inline policy, for review."
  value       = data.aws_iam_policy_document.worker.json
}

output "log_group_name" {
  description = "The function's log group."
  value       = aws_cloudwatch_log_group.this.name
}

output "event_source_mapping_ids" {
  description = "Event source mapping UUIDs by cloudq queue name."
  value       = { for name, m in aws_lambda_event_source_mapping.this : name => m.uuid }
}
