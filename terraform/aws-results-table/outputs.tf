output "table_name" {
  description = "The table's name."
  value       = aws_dynamodb_table.results.name
}

output "table_arn" {
  description = "The table's ARN: pass it to aws-lambda-worker's results_table_arn."
  value       = aws_dynamodb_table.results.arn
}

output "backend_url" {
  description = "The app's result_backend (CLOUDQ_RESULT_BACKEND)."
  value       = "dynamodb://${aws_dynamodb_table.results.name}"
}
