resource "aws_efs_file_system" "this" {
  creation_token   = "${var.name}-efs"
  encrypted        = true
  kms_key_id       = var.kms_key_arn
  performance_mode = "generalPurpose"
  throughput_mode  = var.efs_throughput_mode

  dynamic "lifecycle_policy" {
    for_each = var.efs_transition_to_ia == null ? [] : [var.efs_transition_to_ia]
    content {
      transition_to_ia = lifecycle_policy.value
    }
  }

  tags = merge(local.tags, { Name = "${var.name}-efs" })
}

resource "aws_efs_mount_target" "this" {
  count           = local.private_subnet_count
  file_system_id  = aws_efs_file_system.this.id
  subnet_id       = local.private_subnet_ids[count.index]
  security_groups = [aws_security_group.efs.id]
}

# One access point per use, all mapping every client to the same POSIX user, so a checkpoint written by
# the trainer or a result written by one server is readable by all, whatever uid the process runs as:
#   models   /brs/models   serving, worker and Lambda mount it read-only; brs-train writes it
#   results  /brs/results  efs_local mode only: the result store, read-write for the servers
#   training /brs          the training instance: models/ and data/
locals {
  access_points = merge(
    { models = "/brs/models", training = "/brs" },
    local.s3_sqs ? {} : { results = "/brs/results" },
  )
}

resource "aws_efs_access_point" "this" {
  for_each       = local.access_points
  file_system_id = aws_efs_file_system.this.id

  posix_user {
    uid = var.brs_uid
    gid = var.brs_uid
  }

  root_directory {
    path = each.value
    creation_info {
      owner_uid   = var.brs_uid
      owner_gid   = var.brs_uid
      permissions = "0750"
    }
  }

  tags = merge(local.tags, { Name = "${var.name}-${each.key}" })
}

# Resource policy. In the same account an identity policy alone would grant access, so the read-only
# promise is made here, with explicit denies that no identity policy can override:
# - no access without TLS, for anyone;
# - no write for the serving, worker and Lambda roles except through the results access point;
# - no client root access for the brs roles (the access points map them to brs_uid anyway).
locals {
  efs_reader_role_arns   = [for k, r in aws_iam_role.this : r.arn if k != "training"]
  efs_training_role_arns = [for k, r in aws_iam_role.this : r.arn if k == "training"]
  # Where each role may write: the servers (and the HTTP Lambda) only to results, in efs_local mode.
  efs_writable_access_points = [for k in ["results"] : aws_efs_access_point.this[k].arn if contains(keys(local.access_points), k)]
}

data "aws_iam_policy_document" "efs" {
  statement {
    sid       = "DenyUnencryptedTransport"
    effect    = "Deny"
    actions   = ["*"]
    resources = [aws_efs_file_system.this.arn]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyServingWritesOutsideResults"
    effect    = "Deny"
    actions   = ["elasticfilesystem:ClientWrite", "elasticfilesystem:ClientRootAccess"]
    resources = [aws_efs_file_system.this.arn]
    principals {
      type        = "AWS"
      identifiers = local.efs_reader_role_arns
    }
    # No results access point (s3_sqs): the condition never matches a real ARN, so every write is denied.
    condition {
      test     = "StringNotEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = length(local.efs_writable_access_points) > 0 ? local.efs_writable_access_points : ["none"]
    }
  }

  statement {
    sid       = "ServingMountModelsReadOnly"
    effect    = "Allow"
    actions   = ["elasticfilesystem:ClientMount"]
    resources = [aws_efs_file_system.this.arn]
    principals {
      type        = "AWS"
      identifiers = local.efs_reader_role_arns
    }
    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = concat([aws_efs_access_point.this["models"].arn], local.efs_writable_access_points)
    }
  }

  dynamic "statement" {
    for_each = length(local.efs_writable_access_points) > 0 ? [1] : []
    content {
      sid       = "ServingWriteResults"
      effect    = "Allow"
      actions   = ["elasticfilesystem:ClientWrite"]
      resources = [aws_efs_file_system.this.arn]
      principals {
        type        = "AWS"
        identifiers = local.efs_reader_role_arns
      }
      condition {
        test     = "StringEquals"
        variable = "elasticfilesystem:AccessPointArn"
        values   = local.efs_writable_access_points
      }
    }
  }

  dynamic "statement" {
    for_each = var.enable_training ? [1] : []
    content {
      sid       = "TrainingReadWrite"
      effect    = "Allow"
      actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
      resources = [aws_efs_file_system.this.arn]
      principals {
        type        = "AWS"
        identifiers = local.efs_training_role_arns
      }
      condition {
        test     = "StringEquals"
        variable = "elasticfilesystem:AccessPointArn"
        values   = [aws_efs_access_point.this["training"].arn]
      }
    }
  }
}

resource "aws_efs_file_system_policy" "this" {
  file_system_id = aws_efs_file_system.this.id
  policy         = data.aws_iam_policy_document.efs.json
}
