# Least privilege, one role per kind of compute. Every grant names its resource: the one bundle object,
# the one secret, this bucket's namespaces, this queue, this group, this file system through a named
# access point. Only the Lambda ENI actions take "*" (they support no resource-level permissions).

locals {
  jobs_bucket_arn = local.s3_sqs ? aws_s3_bucket.jobs[0].arn : null
  queue_arn       = local.s3_sqs ? aws_sqs_queue.jobs[0].arn : null

  # The bucket's key namespaces and what each kind of process does under them: the one table brs-serve
  # (store::namespaces) and this module share, so a key the store writes is a key some role may write.
  store_namespaces = jsondecode(file("${path.module}/store-namespaces.json")).namespaces
  store_verbs      = { get = "s3:GetObject", put = "s3:PutObject", delete = "s3:DeleteObject" }
  # Process kind ("api", "worker") -> verb -> the prefixes it may use that verb on.
  store_grants = { for kind in ["api", "worker"] : kind => {
    for verb in keys(local.store_verbs) : verb => [for ns in local.store_namespaces : ns.prefix if contains(ns[kind], verb)]
  } }

  # What each kind of compute may do. store: the process kinds whose S3 grants the role gets (an HTTP
  # instance also consumes the queue, so it is both). Lambda functions mount only the models (a
  # function takes one access point) and log to their own group.
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
        store       = ["api", "worker"]
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
        store       = ["worker"]
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
        store       = []
        sqs_actions = []
        secret      = false
      }
    } : {},
    # The HTTP function sends job items; the worker function is fed by the event source mapping, which
    # receives and deletes with the function's role. Both read the HMAC secret from Secrets Manager at
    # init (BRS_SECRET_ARN), so it never sits in their environment.
    var.enable_lambda ? {
      lambda-api = {
        description = "brs Lambda HTTP API"
        service     = "lambda.amazonaws.com"
        lambda      = true
        bundle      = null
        efs_mount   = ["models"]
        efs_write   = []
        lifecycle   = false
        store       = ["api"]
        sqs_actions = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
        secret      = true
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
        store       = ["worker"]
        sqs_actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
        secret      = true
      }
    } : {},
  )
  instance_roles = { for k, v in local.roles : k => v if !v.lambda }

  # Role -> verb -> prefixes, the union over the role's process kinds (empty without s3_sqs).
  role_store = { for k, r in local.roles : k => {
    for verb in keys(local.store_verbs) : verb => local.s3_sqs ? sort(distinct(flatten([for kind in r.store : local.store_grants[kind][verb]]))) : []
  } }
  # The roles that may touch objects in the jobs bucket: its policy denies everyone else.
  store_role_names = [for k, r in local.roles : k if length(r.store) > 0]
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

  # The store's grants, one statement per verb, from store-namespaces.json (JobsGet, JobsPut, JobsDelete).
  dynamic "statement" {
    for_each = { for verb in ["get", "put", "delete"] : verb => local.role_store[each.key][verb] if length(local.role_store[each.key][verb]) > 0 }
    content {
      sid       = "Jobs${title(statement.key)}"
      actions   = [local.store_verbs[statement.key]]
      resources = [for p in statement.value : "${local.jobs_bucket_arn}/${p}*"]
    }
  }

  # Without s3:ListBucket a GetObject of a missing key answers 403, not 404 (S3's GetObject reference),
  # and the store cannot tell "not there yet" from "forbidden". AWS documents only that the permission
  # must be on the bucket; a grant conditioned with StringLike on s3:prefix is reported to keep the 403,
  # as the implicit check behind the 404 carries no s3:prefix and a condition on an absent key fails.
  # StringLikeIfExists passes an absent key, so it gives the 404 whichever way S3 does it, and is as
  # narrow as S3 allows: a listing that names a prefix must name one of the role's namespaces, while
  # one naming none passes too (no condition key tells it from the implicit check) and shows key names,
  # never contents, of a bucket that holds only these namespaces.
  dynamic "statement" {
    for_each = length(local.role_store[each.key].get) > 0 ? [local.role_store[each.key].get] : []
    content {
      sid       = "JobsList"
      actions   = ["s3:ListBucket"]
      resources = [local.jobs_bucket_arn]
      condition {
        test     = "StringLikeIfExists"
        variable = "s3:prefix"
        values   = [for p in statement.value : "${p}*"]
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
    # Only for what the role touches that the key encrypts: the bucket and queue (s3_sqs) and the
    # secret. The training role gets none: it uses EFS only, which decrypts with the key itself.
    for_each = var.kms_key_arn != null && ((local.s3_sqs && length(each.value.store) > 0) || each.value.secret) ? [var.kms_key_arn] : []
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
