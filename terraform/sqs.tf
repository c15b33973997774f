# The job queue (store_mode s3_sqs): one message per job image. A message received max_receives times
# without being deleted moves to the dead-letter queue, where brs-serve's item is marked failed.

resource "aws_sqs_queue" "dlq" {
  count                     = local.s3_sqs ? 1 : 0
  name                      = "${var.name}-jobs-dlq"
  message_retention_seconds = var.dlq_retention_days * 86400
  sqs_managed_sse_enabled   = var.kms_key_arn == null ? true : null
  kms_master_key_id         = var.kms_key_arn
  tags                      = merge(local.tags, { Name = "${var.name}-jobs-dlq" })
}

resource "aws_sqs_queue" "jobs" {
  count                      = local.s3_sqs ? 1 : 0
  name                       = "${var.name}-jobs"
  visibility_timeout_seconds = var.queue_visibility_timeout_secs
  receive_wait_time_seconds  = var.queue_wait_time_secs
  # Results expire after results_expire_days; an item older than the DLQ's retention is of no use either.
  message_retention_seconds = var.dlq_retention_days * 86400
  sqs_managed_sse_enabled   = var.kms_key_arn == null ? true : null
  kms_master_key_id         = var.kms_key_arn
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[0].arn
    maxReceiveCount     = var.max_receives
  })
  tags = merge(local.tags, { Name = "${var.name}-jobs" })
}

# Queue policies: TLS only, and the brs roles by name (their identity policies hold the same actions).
data "aws_iam_policy_document" "queue" {
  for_each = local.s3_sqs ? { jobs = aws_sqs_queue.jobs[0].arn, dlq = aws_sqs_queue.dlq[0].arn } : {}

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  dynamic "statement" {
    for_each = { for k, r in local.roles : k => r.sqs_actions if each.key == "jobs" && length(r.sqs_actions) > 0 }
    content {
      sid       = "Brs${replace(title(replace(statement.key, "-", " ")), " ", "")}"
      actions   = statement.value
      resources = [each.value]
      principals {
        type        = "AWS"
        identifiers = [aws_iam_role.this[statement.key].arn]
      }
    }
  }
}

resource "aws_sqs_queue_policy" "this" {
  for_each  = data.aws_iam_policy_document.queue
  queue_url = each.key == "jobs" ? aws_sqs_queue.jobs[0].id : aws_sqs_queue.dlq[0].id
  policy    = each.value.json
}
