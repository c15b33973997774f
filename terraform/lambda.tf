resource "aws_cloudwatch_log_group" "lambda" {
  count             = var.enable_lambda ? 1 : 0
  name              = "/aws/lambda/${var.name}-api"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

resource "aws_lambda_function" "api" {
  count         = var.enable_lambda ? 1 : 0
  function_name = "${var.name}-api"
  description   = "brs-serve router through lambda_http; weights from EFS"
  role          = aws_iam_role.lambda[0].arn
  package_type  = "Image"
  image_uri     = var.lambda_image_uri
  architectures = [var.lambda_architecture]
  memory_size   = var.lambda_memory_mb
  timeout       = var.lambda_timeout_secs

  reserved_concurrent_executions = var.lambda_reserved_concurrency

  # The function must sit in the VPC to reach the EFS mount targets.
  vpc_config {
    subnet_ids         = local.private_subnet_ids
    security_group_ids = [aws_security_group.lambda[0].id]
  }

  file_system_config {
    arn              = aws_efs_access_point.brs.arn
    local_mount_path = local.efs_mount_path
  }

  # brs-lambda reads these instead of /etc/brs/serve.toml (docs/aws.md): BRS_MODEL_DIR is served as
  # its one style, so it points at the default style's run directory.
  environment {
    variables = {
      BRS_MODEL_DIR   = "${local.models_path}/${var.styles[local.default_style]}"
      BRS_RESULTS_DIR = "${local.efs_mount_path}/results"
    }
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.lambda[0].name
  }

  tags = merge(local.tags, { Name = "${var.name}-api" })

  # Lambda checks the mount targets and the role's permissions when the function is created.
  depends_on = [aws_efs_mount_target.this, aws_iam_role_policy.lambda]
}

resource "aws_lambda_function_url" "api" {
  count              = var.enable_lambda ? 1 : 0
  function_name      = aws_lambda_function.api[0].function_name
  authorization_type = var.lambda_url_auth_type
  invoke_mode        = "BUFFERED"
}

# A public URL (auth NONE) still needs a resource policy that lets anyone invoke it through the URL.
resource "aws_lambda_permission" "url_public" {
  count                  = var.enable_lambda && var.lambda_url_auth_type == "NONE" ? 1 : 0
  statement_id           = "FunctionUrlPublic"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.api[0].function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}
