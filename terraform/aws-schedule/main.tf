locals {
  target_queues = distinct([for s in var.schedules : s.queue])
}

resource "aws_scheduler_schedule_group" "this" {
  name = var.name
  tags = var.tags
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = "${var.name}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

# The scheduler may send to the queues its entries name, and nothing else.
data "aws_iam_policy_document" "send" {
  statement {
    sid       = "SendTicks"
    actions   = ["sqs:SendMessage"]
    resources = [for q in local.target_queues : var.queue_arns[q]]
  }

  dynamic "statement" {
    for_each = length(var.kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "QueueKeys"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = var.kms_key_arns
    }
  }
}

resource "aws_iam_role_policy" "send" {
  name   = "cloudq-schedule"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.send.json
}

resource "aws_scheduler_schedule" "this" {
  for_each = var.schedules

  name                         = each.key
  group_name                   = aws_scheduler_schedule_group.this.name
  description                  = each.value.description
  schedule_expression          = each.value.schedule_expression
  schedule_expression_timezone = each.value.timezone
  state                        = each.value.enabled ? "ENABLED" : "DISABLED"

  flexible_time_window {
    mode                      = each.value.flexible_time_window_minutes == null ? "OFF" : "FLEXIBLE"
    maximum_window_in_minutes = each.value.flexible_time_window_minutes
  }

  target {
    arn      = var.queue_arns[each.value.queue]
    role_arn = aws_iam_role.this.arn
    input    = each.value.input

    dynamic "sqs_parameters" {
      for_each = each.value.message_group_id == null ? [] : [1]
      content {
        message_group_id = each.value.message_group_id
      }
    }

    retry_policy {
      maximum_retry_attempts = var.retry_attempts
    }
  }

  lifecycle {
    precondition {
      condition     = contains(keys(var.queue_arns), each.value.queue)
      error_message = "Schedule ${each.key} names queue ${each.value.queue}, which is not in queue_arns."
    }
  }

  depends_on = [aws_iam_role_policy.send]
}
