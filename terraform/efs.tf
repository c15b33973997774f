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

# Every client (brs-serve, brs-train, the Lambda) enters through this access point as the same POSIX
# user, so a checkpoint written by the trainer or a result written by one server is readable by all,
# whatever uid the process runs as locally.
resource "aws_efs_access_point" "brs" {
  file_system_id = aws_efs_file_system.this.id

  posix_user {
    uid = var.brs_uid
    gid = var.brs_uid
  }

  root_directory {
    path = "/brs"
    creation_info {
      owner_uid   = var.brs_uid
      owner_gid   = var.brs_uid
      permissions = "0750"
    }
  }

  tags = merge(local.tags, { Name = "${var.name}-brs" })
}

# Resource policy: no unencrypted NFS, and the brs roles may mount only through the access point.
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
    sid       = "BrsClientsThroughAccessPoint"
    effect    = "Allow"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.this.arn]
    principals {
      type        = "AWS"
      identifiers = local.efs_client_role_arns
    }
    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.brs.arn]
    }
  }
}

resource "aws_efs_file_system_policy" "this" {
  file_system_id = aws_efs_file_system.this.id
  policy         = data.aws_iam_policy_document.efs.json
}
