locals {
  dlq_arns = distinct([for q in var.queues : q.dlq_arn])
  environment = merge(
    {
      CLOUDQ_APP        = var.app
      CLOUDQ_BROKER_URL = var.broker_url
      # The role may not create queues: Terraform made them.
      CLOUDQ_CREATE_MISSING_QUEUES = "false"
    },
    var.result_backend == null ? {} : { CLOUDQ_RESULT_BACKEND = var.result_backend },
    var.claim_check_url == null ? {} : { CLOUDQ_CLAIM_CHECK_URL = var.claim_check_url },
    var.environment,
  )
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.function_name
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

# Least privilege: only the queues, dead-letter queues, table, bucket prefix, keys and log group
# this function uses, with only the calls cloudq makes on each.
data "aws_iam_policy_document" "worker" {
  statement {
    sid = "ConsumeQueues"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:SendMessage", # retries go back to the task's queue
    ]
    resources = [for q in var.queues : q.arn]
  }

  statement {
    sid       = "DeadLetter"
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    resources = local.dlq_arns
  }

  dynamic "statement" {
    for_each = length(var.send_queue_arns) > 0 ? [1] : []
    content {
      sid       = "SendToOtherQueues"
      actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
      resources = var.send_queue_arns
    }
  }

  dynamic "statement" {
    for_each = var.results_table_arn == null ? [] : [1]
    content {
      sid       = "Results"
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"]
      resources = [var.results_table_arn]
    }
  }

  dynamic "statement" {
    for_each = var.claim_check_bucket_arn == null ? [] : [1]
    content {
      sid       = "ClaimChecks"
      actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
      resources = ["${var.claim_check_bucket_arn}/${var.claim_check_prefix}/*"]
    }
  }

  dynamic "statement" {
    for_each = length(var.kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "QueueKeys"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = var.kms_key_arns
    }
  }

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }
}

resource "aws_iam_role_policy" "worker" {
  name   = "cloudq-worker"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.worker.json
}

# Made here (not by Lambda on first run) so it has a retention and the role needs no CreateLogGroup.
resource "aws_cloudwatch_log_group" "this" {
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_lambda_function" "this" {
  function_name                  = var.function_name
  role                           = aws_iam_role.this.arn
  filename                       = var.package_path
  source_code_hash               = filebase64sha256(var.package_path)
  handler                        = var.handler
  runtime                        = var.runtime
  architectures                  = [var.architecture]
  memory_size                    = var.memory_size
  timeout                        = var.timeout_seconds
  reserved_concurrent_executions = var.reserved_concurrency
  tags                           = var.tags

  environment {
    variables = local.environment
  }

  depends_on = [aws_cloudwatch_log_group.this, aws_iam_role_policy.worker]
}

resource "aws_lambda_event_source_mapping" "this" {
  for_each = var.queues

  event_source_arn                   = each.value.arn
  function_name                      = aws_lambda_function.this.arn
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.maximum_batching_window_in_seconds
  # The handler reports the records to redeliver; the others are deleted.
  function_response_types = ["ReportBatchItemFailures"]

  dynamic "scaling_config" {
    for_each = var.maximum_concurrency == null ? [] : [1]
    content {
      maximum_concurrency = var.maximum_concurrency
    }
  }

  lifecycle {
    precondition {
      condition     = each.value.visibility_timeout_seconds >= 6 * var.timeout_seconds
      error_message = "Queue ${each.key}: visibility ${each.value.visibility_timeout_seconds}s is under 6x the function timeout (${var.timeout_seconds}s); set aws-queue's function_timeout_seconds."
    }
  }

  depends_on = [aws_iam_role_policy.worker]
}
