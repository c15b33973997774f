# Least privilege, one role per kind of compute. Every grant names its resource: the one bundle object,
# the one secret, this bucket's three prefixes, this queue, this group, this file system through a named
# access point. Only the Lambda ENI actions take "*" (they support no resource-level permissions).

locals {
  jobs_bucket_arn = local.s3_sqs ? aws_s3_bucket.jobs[0].arn : null
  queue_arn       = local.s3_sqs ? aws_sqs_queue.jobs[0].arn : null
  jobs_prefixes   = ["inputs/", "results/", "jobs/"]

  # What each kind of compute may do (the HTTP instances also consume the queue: interface.md). Lambda
  # functions mount only the models (a function takes one access point) and log to their own group.
  roles = merge(
    {
      serve = {
        description = "brs-serve HTTP instances"
        service     = "ec2.amazonaws.com"
        lambda      = false
        bundle      = local.bundles.main
        efs_mount   = concat(["models"], local.s3_sqs ? [] : ["results"])
        efs_write   = local.s3_sqs ? [] : ["results"]
        lifecycle   = true
        s3_rw       = local.jobs_prefixes
        s3_read     = []
        s3_delete   = local.jobs_prefixes
        sqs_actions = ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
        secret      = true
      }
    },
    local.workers ? {
      worker = {
        description = "brs-serve queue workers"
        service     = "ec2.amazonaws.com"
        lambda      = false
        bundle      = local.bundles.main
        efs_mount   = ["models"]
        efs_write   = []
        lifecycle   = true
        s3_rw       = ["results/", "jobs/"]
        s3_read     = ["inputs/"]
        s3_delete   = []
        sqs_actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
        secret      = true
      }
    } : {},
    var.enable_training ? {
      training = {
        description = "brs training instance"
        service     = "ec2.amazonaws.com"
        lambda      = false
        bundle      = local.bundles.training
        efs_mount   = ["training"]
        efs_write   = ["training"]
        lifecycle   = false
        s3_rw       = []
        s3_read     = []
        s3_delete   = []
        sqs_actions = []
        secret      = false
      }
    } : {},
    # The HTTP function sends job items; the worker function is fed by the event source mapping, which
    # receives and deletes with the function's role.
    var.enable_lambda ? {
      lambda-api = {
        description = "brs Lambda HTTP API"
        service     = "lambda.amazonaws.com"
        lambda      = true
        bundle      = null
        efs_mount   = ["models"]
        efs_write   = []
        lifecycle   = false
        s3_rw       = local.jobs_prefixes
        s3_read     = []
        s3_delete   = local.jobs_prefixes
        sqs_actions = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
        secret      = false
      }
    } : {},
    local.lambda_worker ? {
      lambda-worker = {
        description = "brs Lambda queue worker"
        service     = "lambda.amazonaws.com"
        lambda      = true
        bundle      = null
        efs_mount   = ["models"]
        efs_write   = []
        lifecycle   = false
        s3_rw       = ["results/", "jobs/"]
        s3_read     = ["inputs/"]
        s3_delete   = []
        sqs_actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
        secret      = false
      }
    } : {},
  )
  instance_roles = { for k, v in local.roles : k => v if !v.lambda }
}

data "aws_iam_policy_document" "assume" {
  for_each = toset(["ec2.amazonaws.com", "lambda.amazonaws.com"])
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = [each.key]
    }
  }
}

resource "aws_iam_role" "this" {
  for_each           = local.roles
  name               = "${var.name}-${each.key}"
  description        = each.value.description
  assume_role_policy = data.aws_iam_policy_document.assume[each.value.service].json
  tags               = local.tags
}

resource "aws_iam_instance_profile" "instance" {
  for_each = local.instance_roles
  name     = "${var.name}-${each.key}"
  role     = aws_iam_role.this[each.key].name
  tags     = local.tags
}

data "aws_iam_policy_document" "role" {
  for_each = local.roles

  dynamic "statement" {
    for_each = each.value.lambda ? [aws_cloudwatch_log_group.lambda[each.key].arn] : []
    content {
      sid       = "OwnLogGroup"
      actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      resources = ["${statement.value}:*"]
    }
  }

  # Lambda creates and removes the function's ENIs with the execution role; these EC2 actions do not
  # support resource-level permissions (the same set as AWSLambdaVPCAccessExecutionRole, minus logs).
  dynamic "statement" {
    for_each = each.value.lambda ? [1] : []
    content {
      sid = "VpcEnis"
      actions = [
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
      ]
      resources = ["*"]
    }
  }

  # Mounting with "-o iam" makes the NFS client present the role; ClientMount alone is read-only.
  statement {
    sid       = "EfsMountThroughAccessPoints"
    actions   = ["elasticfilesystem:ClientMount"]
    resources = [aws_efs_file_system.this.arn]
    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [for k in each.value.efs_mount : aws_efs_access_point.this[k].arn]
    }
  }

  dynamic "statement" {
    for_each = length(each.value.efs_write) > 0 ? [1] : []
    content {
      sid       = "EfsWriteThroughAccessPoints"
      actions   = ["elasticfilesystem:ClientWrite"]
      resources = [aws_efs_file_system.this.arn]
      condition {
        test     = "StringEquals"
        variable = "elasticfilesystem:AccessPointArn"
        values   = [for k in each.value.efs_write : aws_efs_access_point.this[k].arn]
      }
    }
  }

  dynamic "statement" {
    for_each = each.value.bundle == null ? [] : [each.value.bundle.arn]
    content {
      sid       = "ReadTheReleaseBundle"
      actions   = ["s3:GetObject"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = each.value.secret ? [1] : []
    content {
      sid       = "ReadTheDeploymentSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.deployment.arn]
    }
  }

  # brs-serve completes its own termination hook, heartbeats it during a long drain and protects itself
  # from scale-in while jobs are pending; these support resource-level permissions: this group only.
  dynamic "statement" {
    for_each = each.value.lifecycle ? [aws_autoscaling_group.this[each.key].arn] : []
    content {
      sid = "OwnGroupLifecycle"
      actions = [
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:RecordLifecycleActionHeartbeat",
        "autoscaling:SetInstanceProtection",
      ]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = local.s3_sqs && length(each.value.s3_rw) > 0 ? [1] : []
    content {
      sid       = "JobsReadWrite"
      actions   = ["s3:GetObject", "s3:PutObject"]
      resources = [for p in each.value.s3_rw : "${local.jobs_bucket_arn}/${p}*"]
    }
  }

  dynamic "statement" {
    for_each = local.s3_sqs && length(each.value.s3_read) > 0 ? [1] : []
    content {
      sid       = "JobsRead"
      actions   = ["s3:GetObject"]
      resources = [for p in each.value.s3_read : "${local.jobs_bucket_arn}/${p}*"]
    }
  }

  dynamic "statement" {
    for_each = local.s3_sqs && length(each.value.s3_delete) > 0 ? [1] : []
    content {
      sid       = "JobsDelete"
      actions   = ["s3:DeleteObject"]
      resources = [for p in each.value.s3_delete : "${local.jobs_bucket_arn}/${p}*"]
    }
  }

  # Listing, limited to the three prefixes: without s3:ListBucket a missing key answers 403, not 404,
  # and a store cannot tell "not there yet" from "forbidden".
  dynamic "statement" {
    for_each = local.s3_sqs && length(concat(each.value.s3_rw, each.value.s3_read)) > 0 ? [1] : []
    content {
      sid       = "JobsList"
      actions   = ["s3:ListBucket"]
      resources = [local.jobs_bucket_arn]
      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = flatten([for p in local.jobs_prefixes : [p, "${p}*"]])
      }
    }
  }

  dynamic "statement" {
    for_each = local.s3_sqs && length(each.value.sqs_actions) > 0 ? [1] : []
    content {
      sid       = "JobsQueue"
      actions   = each.value.sqs_actions
      resources = [local.queue_arn]
    }
  }

  dynamic "statement" {
    for_each = var.kms_key_arn != null && (local.s3_sqs || each.value.secret) ? [var.kms_key_arn] : []
    content {
      sid       = "UseTheDeploymentKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "this" {
  for_each = local.roles
  name     = "brs-${each.key}"
  role     = aws_iam_role.this[each.key].id
  policy   = data.aws_iam_policy_document.role[each.key].json
}

resource "aws_iam_role_policy_attachment" "instance_ssm" {
  for_each   = var.enable_ssm_session_manager ? local.instance_roles : {}
  role       = aws_iam_role.this[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}
