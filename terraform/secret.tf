# The per-deployment secret keying result and job ids (an HMAC; interface.md: secret_file / BRS_SECRET).
# Secrets Manager draws it once; instances read it at boot (only this secret's ARN is granted), the
# Lambda functions get it as BRS_SECRET. The value is in terraform's state (the Lambda environment
# needs it there anyway): keep the state encrypted. Rotating it changes every result key, so it is kept
# across applies (ignore_changes); `terraform apply -replace` on the version starts a new one.

data "aws_secretsmanager_random_password" "deployment" {
  password_length     = 64
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "deployment" {
  #checkov:skip=CKV2_AWS_57:rotating the HMAC key changes every result and job id; replace it deliberately (terraform apply -replace) and roll the groups
  name_prefix             = "${var.name}-deployment-"
  description             = "brs per-deployment HMAC secret for result and job ids"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "deployment" {
  secret_id     = aws_secretsmanager_secret.deployment.id
  secret_string = data.aws_secretsmanager_random_password.deployment.random_password

  lifecycle {
    # The data source draws a new password on every plan; the first one stays.
    ignore_changes = [secret_string]
  }
}
