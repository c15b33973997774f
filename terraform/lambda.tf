# The Lambda variant, from one container image (deploy/lambda/Dockerfile, the cpu or onnx bundle on
# provided.al2023): "lambda-api" serves the HTTP router behind a function URL (BRS_LAMBDA_MODE=http);
# "lambda-worker" (s3_sqs) takes job items from the queue through an event source mapping
# (BRS_LAMBDA_MODE=sqs) and reports partial batch failures. Both mount the models read-only: a function
# takes a single EFS access point, so with efs_local the HTTP function keeps its result cache in /tmp.

locals {
  # Lambda takes a single path component under /mnt for its one file system.
  lambda_models_mount = "/mnt/models"
  lambda_functions = merge(
    var.enable_lambda ? { lambda-api = { mode = "http", description = "brs-serve router through lambda_http; weights from EFS" } } : {},
    local.lambda_worker ? { lambda-worker = { mode = "sqs", description = "brs job-queue worker (SQS event source); weights from EFS" } } : {},
  )
  lambda_env = merge(
    {
      # brs-lambda serves BRS_MODEL_DIR as its one style: the default style's run directory.
      BRS_MODEL_DIR = "${local.lambda_models_mount}/${var.styles[local.default_style]}"
      # The HMAC secret is read from Secrets Manager at init, never put here: an environment is
      # visible to anyone who may read the function's configuration, and would put the value in state.
      BRS_SECRET_ARN = aws_secretsmanager_secret.deployment.arn
    },
    var.lambda_engine != null ? { BRS_ENGINE = var.lambda_engine } : {},
    local.s3_sqs ? {
      BRS_STORE_S3_BUCKET    = aws_s3_bucket.jobs[0].id
      BRS_QUEUE_SQS_URL      = aws_sqs_queue.jobs[0].url
      BRS_QUEUE_MAX_RECEIVES = tostring(var.max_receives)
      } : {
      BRS_RESULTS_DIR = "/tmp/brs-results"
    },
  )
}

resource "aws_cloudwatch_log_group" "lambda" {
  #checkov:skip=CKV_AWS_338:retention is log_retention_days (default 30); a year of per-request logs costs more than it is worth here
  for_each          = local.lambda_functions
  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = local.tags
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_116:a DLQ catches failed asynchronous invocations; these are synchronous (function URL) or fed by SQS, whose redrive policy has the DLQ
  #checkov:skip=CKV_AWS_272:Lambda code signing covers .zip packages only; this is a container image (pin it by digest in lambda_image_uri)
  for_each      = local.lambda_functions
  function_name = "${var.name}-${each.key}"
  description   = each.value.description
  role          = aws_iam_role.this[each.key].arn
  package_type  = "Image"
  image_uri     = var.lambda_image_uri
  architectures = [var.lambda_architecture]
  memory_size   = var.lambda_memory_mb
  # The worker's timeout stays within the queue's visibility timeout, or a slow batch
  # would be handed to a second invocation while the first still works on it.
  timeout     = each.value.mode == "sqs" ? min(var.lambda_timeout_secs, var.queue_visibility_timeout_secs) : var.lambda_timeout_secs
  kms_key_arn = var.kms_key_arn

  # The worker's concurrency is capped by the event source mapping (lambda_worker_max_concurrency).
  reserved_concurrent_executions = each.value.mode == "sqs" ? -1 : var.lambda_reserved_concurrency

  # The function must sit in the VPC to reach the EFS mount targets.
  vpc_config {
    subnet_ids         = local.private_subnet_ids
    security_group_ids = [aws_security_group.lambda[0].id]
  }

  file_system_config {
    arn              = aws_efs_access_point.this["models"].arn
    local_mount_path = local.lambda_models_mount
  }

  environment {
    variables = merge(local.lambda_env, { BRS_LAMBDA_MODE = each.value.mode })
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.lambda[each.key].name
  }

  tracing_config {
    mode = "PassThrough"
  }

  tags = merge(local.tags, { Name = "${var.name}-${each.key}" })

  # Lambda checks the mount targets and the role's permissions when the function is created; the
  # function reads the secret's value at init, so the value must exist before the first invocation.
  depends_on = [aws_efs_mount_target.this, aws_iam_role_policy.this, aws_secretsmanager_secret_version.deployment]
}

resource "aws_lambda_function_url" "api" {
  count              = var.enable_lambda ? 1 : 0
  function_name      = aws_lambda_function.this["lambda-api"].function_name
  authorization_type = var.lambda_url_auth_type
  invoke_mode        = "BUFFERED"
}

# A public URL (auth NONE) still needs a resource policy that lets anyone invoke it through the URL.
resource "aws_lambda_permission" "url_public" {
  count                  = var.enable_lambda && var.lambda_url_auth_type == "NONE" ? 1 : 0
  statement_id           = "FunctionUrlPublic"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.this["lambda-api"].function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

# SQS -> the worker function. With ReportBatchItemFailures, brs-lambda answers batchItemFailures and
# only those messages return to the queue (and, after max_receives, to the DLQ); their neighbours are
# deleted. maximum_concurrency caps how many invocations the mapping runs at once.
resource "aws_lambda_event_source_mapping" "jobs" {
  count                   = local.lambda_worker ? 1 : 0
  event_source_arn        = aws_sqs_queue.jobs[0].arn
  function_name           = aws_lambda_function.this["lambda-worker"].arn
  batch_size              = var.queue_batch_size
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.lambda_worker_max_concurrency
  }

  depends_on = [aws_iam_role_policy.this]
}
