locals {
  efs_client_role_arns = concat(
    [aws_iam_role.serve.arn],
    var.enable_lambda ? [aws_iam_role.lambda[0].arn] : [],
    var.enable_training ? [aws_iam_role.training[0].arn] : [],
  )
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# Mounting with "-o iam" makes the NFS client present the role; the file system policy then checks it.
data "aws_iam_policy_document" "efs_client" {
  statement {
    sid       = "MountThroughAccessPoint"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.this.arn]
    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.brs.arn]
    }
  }
}

# --- brs-serve instances --------------------------------------------------------------------------

resource "aws_iam_role" "serve" {
  name               = "${var.name}-serve"
  description        = "brs-serve instances: EFS through the access point, lifecycle actions on their own group"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = local.tags
}

resource "aws_iam_instance_profile" "serve" {
  name = "${var.name}-serve"
  role = aws_iam_role.serve.name
  tags = local.tags
}

resource "aws_iam_role_policy" "serve_efs" {
  name   = "efs-client"
  role   = aws_iam_role.serve.id
  policy = data.aws_iam_policy_document.efs_client.json
}

# brs-serve completes its own termination hook, heartbeats it during a long drain and protects itself
# from scale-in while jobs are pending. These three actions support resource-level permissions, so
# they are granted on this one group's ARN: an instance cannot touch any other group.
data "aws_iam_policy_document" "serve_lifecycle" {
  statement {
    sid = "OwnGroupLifecycle"
    actions = [
      "autoscaling:CompleteLifecycleAction",
      "autoscaling:RecordLifecycleActionHeartbeat",
      "autoscaling:SetInstanceProtection",
    ]
    resources = [aws_autoscaling_group.serve.arn]
  }
}

resource "aws_iam_role_policy" "serve_lifecycle" {
  name   = "own-group-lifecycle"
  role   = aws_iam_role.serve.id
  policy = data.aws_iam_policy_document.serve_lifecycle.json
}

resource "aws_iam_role_policy_attachment" "serve_ssm" {
  count      = var.enable_ssm_session_manager ? 1 : 0
  role       = aws_iam_role.serve.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

# --- training instance ----------------------------------------------------------------------------

resource "aws_iam_role" "training" {
  count              = var.enable_training ? 1 : 0
  name               = "${var.name}-training"
  description        = "brs training instance: EFS through the access point"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = local.tags
}

resource "aws_iam_instance_profile" "training" {
  count = var.enable_training ? 1 : 0
  name  = "${var.name}-training"
  role  = aws_iam_role.training[0].name
  tags  = local.tags
}

resource "aws_iam_role_policy" "training_efs" {
  count  = var.enable_training ? 1 : 0
  name   = "efs-client"
  role   = aws_iam_role.training[0].id
  policy = data.aws_iam_policy_document.efs_client.json
}

resource "aws_iam_role_policy_attachment" "training_ssm" {
  count      = var.enable_training && var.enable_ssm_session_manager ? 1 : 0
  role       = aws_iam_role.training[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

# --- Lambda variant -------------------------------------------------------------------------------

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  count              = var.enable_lambda ? 1 : 0
  name               = "${var.name}-lambda"
  description        = "brs Lambda variant: its log group, VPC ENIs, EFS through the access point"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "lambda" {
  count = var.enable_lambda ? 1 : 0

  statement {
    sid       = "OwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda[0].arn}:*"]
  }

  # Lambda creates and removes the function's ENIs with the execution role; these EC2 actions do not
  # support resource-level permissions (the same set as AWSLambdaVPCAccessExecutionRole, minus logs).
  statement {
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

  statement {
    sid       = "MountThroughAccessPoint"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.this.arn]
    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.brs.arn]
    }
  }
}

resource "aws_iam_role_policy" "lambda" {
  count  = var.enable_lambda ? 1 : 0
  name   = "brs-lambda"
  role   = aws_iam_role.lambda[0].id
  policy = data.aws_iam_policy_document.lambda[0].json
}
