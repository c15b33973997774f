# The per-deployment secret keying result and job ids (an HMAC; brs-serve's secret_file, brs-lambda's
# BRS_SECRET_ARN). Secrets Manager draws it; the instances read it at boot and the Lambda functions at
# init, each role granted this one secret only.
#
# The value never enters terraform's state or plan files: the password is an ephemeral resource (drawn
# during the run, never persisted) written through the write-only secret_string_wo (terraform >= 1.11,
# AWS provider >= 5.100 as pinned in versions.tf). The version number, not the value, is what terraform
# remembers: a new value is written only when secret_string_wo_version changes, so the secret stays put
# across applies. Rotating it changes every result and job id: bump the version (or
# `terraform apply -replace=aws_secretsmanager_secret_version.deployment`) and roll the groups.

ephemeral "aws_secretsmanager_random_password" "deployment" {
  password_length     = 64
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "deployment" {
  #checkov:skip=CKV2_AWS_57:rotating the HMAC key changes every result and job id; replace it deliberately (bump secret_string_wo_version) and roll the groups
  name_prefix             = "${var.name}-deployment-"
  description             = "brs per-deployment HMAC secret for result and job ids"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "deployment" {
  secret_id                = aws_secretsmanager_secret.deployment.id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.deployment.random_password
  secret_string_wo_version = 1
}
