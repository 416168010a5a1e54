locals {
  # Names as the cloudq SQS adapter computes them: <prefix><name>, DLQ <name>-dlq (x.fifo -> x-dlq.fifo).
  names = {
    for name, q in var.queues : name => {
      fifo  = endswith(name, ".fifo")
      queue = "${var.prefix}${name}"
      dlq   = endswith(name, ".fifo") ? "${var.prefix}${trimsuffix(name, ".fifo")}-dlq.fifo" : "${var.prefix}${name}-dlq"
      visibility = (
        var.function_timeout_seconds == null
        ? q.visibility_timeout_seconds
        : max(q.visibility_timeout_seconds, 6 * var.function_timeout_seconds)
      )
    }
  }
  sse_sqs          = var.kms_key_id == null
  customer_kms_key = var.kms_key_id != null && var.kms_key_id != "alias/aws/sqs"
}

resource "aws_sqs_queue" "dlq" {
  for_each = var.queues

  name                              = local.names[each.key].dlq
  fifo_queue                        = local.names[each.key].fifo ? true : null
  message_retention_seconds         = var.dead_letter_retention_seconds
  max_message_size                  = each.value.max_message_size
  sqs_managed_sse_enabled           = local.sse_sqs ? true : null
  kms_master_key_id                 = var.kms_key_id
  kms_data_key_reuse_period_seconds = local.sse_sqs ? null : var.kms_data_key_reuse_period_seconds
  tags                              = var.tags
}

resource "aws_sqs_queue" "this" {
  for_each = var.queues

  name                              = local.names[each.key].queue
  fifo_queue                        = local.names[each.key].fifo ? true : null
  visibility_timeout_seconds        = local.names[each.key].visibility
  message_retention_seconds         = each.value.message_retention_seconds
  delay_seconds                     = each.value.delay_seconds
  max_message_size                  = each.value.max_message_size
  sqs_managed_sse_enabled           = local.sse_sqs ? true : null
  kms_master_key_id                 = var.kms_key_id
  kms_data_key_reuse_period_seconds = local.sse_sqs ? null : var.kms_data_key_reuse_period_seconds
  # The broker's safety net for crashed consumers; cloudq dead-letters failed tasks itself.
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = each.value.max_receive_count
  })
  tags = var.tags

  lifecycle {
    precondition {
      condition     = local.names[each.key].visibility <= 43200
      error_message = "Visibility timeout of ${each.key} exceeds SQS's 12 hours (6x the function timeout?)."
    }
  }
}

# --- optional claim-check bucket -----------------------------------------------------------
resource "aws_s3_bucket" "claim_checks" {
  count = var.claim_check_bucket_name == null ? 0 : 1

  bucket        = var.claim_check_bucket_name
  force_destroy = var.claim_check_force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "claim_checks" {
  count = var.claim_check_bucket_name == null ? 0 : 1

  bucket                  = aws_s3_bucket.claim_checks[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "claim_checks" {
  count = var.claim_check_bucket_name == null ? 0 : 1

  bucket = aws_s3_bucket.claim_checks[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "claim_checks" {
  count = var.claim_check_bucket_name == null ? 0 : 1

  bucket = aws_s3_bucket.claim_checks[0].id
  rule {
    id     = "expire-cloudq-claim-checks"
    status = "Enabled"
    filter {
      prefix = "${var.claim_check_prefix}/"
    }
    expiration {
      days = var.claim_check_expiration_days
    }
  }
}
