# The jobs bucket (store_mode s3_sqs): the namespaces of store-namespaces.json (inputs/, jobs/,
# results/, dedup/, health/) under one private bucket, expired by lifecycle rules instead of a pruning
# walk on every instance.

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

locals {
  # expire_days in store-namespaces.json is a number of days or the name of one of these variables.
  expire_days_variables = {
    inputs_expire_days  = var.inputs_expire_days
    results_expire_days = var.results_expire_days
  }
  store_expiry = { for ns in local.store_namespaces : ns.prefix => try(tonumber(ns.expire_days), local.expire_days_variables[ns.expire_days]) }
}

# One rule per namespace of store-namespaces.json: whatever the store writes also expires.
resource "aws_s3_bucket_lifecycle_configuration" "jobs" {
  count  = local.s3_sqs ? 1 : 0
  bucket = aws_s3_bucket.jobs[0].id

  dynamic "rule" {
    for_each = local.store_expiry
    content {
      id     = trimsuffix(rule.key, "/")
      status = "Enabled"
      filter {
        prefix = rule.key
      }
      expiration {
        days = rule.value
      }
    }
  }

  # Uploads that never completed (a client or an instance gone mid-way) cost storage until aborted,
  # whatever their key.
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  lifecycle {
    # The file is shared with brs-serve; a malformed row would otherwise surface as an odd IAM grant.
    precondition {
      condition = alltrue([for ns in local.store_namespaces :
        can(regex("^[a-z][a-z0-9-]*/$", ns.prefix))
        && length(setsubtract(concat(ns.api, ns.worker), keys(local.store_verbs))) == 0
        && try(tonumber(ns.expire_days) >= 1, contains(keys(local.expire_days_variables), ns.expire_days))
      ]) && length(distinct([for ns in local.store_namespaces : ns.prefix])) == length(local.store_namespaces)
      error_message = "store-namespaces.json: every namespace needs a distinct prefix like \"name/\", api and worker lists of get/put/delete, and expire_days as a number >= 1 or one of ${join(", ", keys(local.expire_days_variables))}."
    }
  }
}

data "aws_iam_policy_document" "jobs_bucket" {
  count = local.s3_sqs ? 1 : 0

  # Objects are for the brs roles alone, whatever other identity policies in the account allow (an
  # admin's s3:*, a leaked key of another workload). Only object reads and writes are denied: bucket
  # configuration stays with whoever runs terraform, and on destroy this policy goes before the bucket,
  # so s3_force_destroy can still empty it. Lifecycle expiry is S3's own and is not subject to it.
  statement {
    sid       = "DenyObjectAccessOutsideBrsRoles"
    effect    = "Deny"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.jobs[0].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = [for k in local.store_role_names : aws_iam_role.this[k].arn]
    }
  }

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
