output "queues" {
  description = "Per cloudq queue name: name, url, arn, dlq_name, dlq_url, dlq_arn, visibility_timeout_seconds, fifo. Pass it to aws-lambda-worker's queues."
  value = {
    for name, q in aws_sqs_queue.this : name => {
      name                       = q.name
      url                        = q.url
      arn                        = q.arn
      dlq_name                   = aws_sqs_queue.dlq[name].name
      dlq_url                    = aws_sqs_queue.dlq[name].url
      dlq_arn                    = aws_sqs_queue.dlq[name].arn
      visibility_timeout_seconds = q.visibility_timeout_seconds
      max_receive_count          = var.queues[name].max_receive_count
      fifo                       = local.names[name].fifo
    }
  }
}

output "queue_arns" {
  description = "Every queue's and dead-letter queue's ARN (for the IAM policies of producers)."
  value       = concat([for q in aws_sqs_queue.this : q.arn], [for q in aws_sqs_queue.dlq : q.arn])
}

output "broker_url" {
  description = "The app's broker URL for these queues (CLOUDQ_BROKER_URL)."
  value       = var.prefix == "" ? "sqs://" : "sqs://?prefix=${var.prefix}"
}

output "kms_key_arn" {
  description = "The customer managed key encrypting the queues, which consumers and producers must be granted; null for AWS managed keys."
  value       = local.customer_kms_key ? var.kms_key_id : null
}

output "claim_check_bucket_arn" {
  description = "ARN of the claim-check bucket, or null."
  value       = one(aws_s3_bucket.claim_checks[*].arn)
}

output "claim_check_prefix" {
  description = "Key prefix of the claim-check objects."
  value       = var.claim_check_prefix
}

output "claim_check_url" {
  description = "The app's claim_check_url (CLOUDQ_CLAIM_CHECK_URL), or null."
  value       = var.claim_check_bucket_name == null ? null : "s3://${var.claim_check_bucket_name}/${var.claim_check_prefix}"
}
