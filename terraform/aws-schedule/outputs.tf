output "schedule_arns" {
  description = "Schedule ARNs by entry name."
  value       = { for name, s in aws_scheduler_schedule.this : name => s.arn }
}

output "group_name" {
  description = "The schedule group."
  value       = aws_scheduler_schedule_group.this.name
}

output "role_arn" {
  description = "The role the scheduler sends with."
  value       = aws_iam_role.this.arn
}

output "policy_json" {
  description = "The role's inline policy, for review."
  value       = data.aws_iam_policy_document.send.json
}
