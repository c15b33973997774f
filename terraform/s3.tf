# The jobs bucket (store_mode s3_sqs): inputs/, results/ and jobs/ under one private bucket, expired by
# lifecycle rules instead of a pruning walk on every instance.

resource "aws_s3_bucket" "jobs" {
  #checkov:skip=CKV_AWS_18:short-lived job data written only by brs roles; use CloudTrail S3 data events where object access must be audited
  #checkov:skip=CKV2_AWS_62:nothing consumes object events: the queue carries the work
  #checkov:skip=CKV_AWS_144:inputs and results expire within days; replicating them to another region would double the cost of data nobody restores
  #checkov:skip=CKV_AWS_21:versioning would keep what DELETE /v1/jobs and the lifecycle rules delete, defeating both
  count         = local.s3_sqs ? 1 : 0
  bucket_prefix = "${var.name}-jobs-"
  force_destroy = var.s3_force_destroy
  tags          = merge(local.tags, { Name = "${var.name}-jobs" })
}

resource "aws_s3_bucket_public_access_block" "jobs" {
  count                   = local.s3_sqs ? 1 : 0
  bucket                  = aws_s3_bucket.jobs[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Objects belong to the bucket owner; ACLs are off entirely.
resource "aws_s3_bucket_ownership_controls" "jobs" {
  count  = local.s3_sqs ? 1 : 0
  bucket = aws_s3_bucket.jobs[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "jobs" {
  count  = local.s3_sqs ? 1 : 0
  bucket = aws_s3_bucket.jobs[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "jobs" {
  count  = local.s3_sqs ? 1 : 0
  bucket = aws_s3_bucket.jobs[0].id

  rule {
    id     = "inputs"
    status = "Enabled"
    filter {
      prefix = "inputs/"
    }
    expiration {
      days = var.inputs_expire_days
    }
    # Uploads that never completed (a client or an instance gone mid-way) cost storage until aborted.
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  dynamic "rule" {
    for_each = ["results/", "jobs/"]
    content {
      id     = trimsuffix(rule.value, "/")
      status = "Enabled"
      filter {
        prefix = rule.value
      }
      expiration {
        days = var.results_expire_days
      }
      abort_incomplete_multipart_upload {
        days_after_initiation = 1
      }
    }
  }

}

data "aws_iam_policy_document" "jobs_bucket" {
  count = local.s3_sqs ? 1 : 0

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.jobs[0].arn, "${aws_s3_bucket.jobs[0].arn}/*"]
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
}

resource "aws_s3_bucket_policy" "jobs" {
  count  = local.s3_sqs ? 1 : 0
  bucket = aws_s3_bucket.jobs[0].id
  policy = data.aws_iam_policy_document.jobs_bucket[0].json
  # A bucket policy put before the public access block could be judged public on its own.
  depends_on = [aws_s3_bucket_public_access_block.jobs]
}
