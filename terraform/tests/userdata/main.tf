# Renders templates/user-data.sh.tftpl for the variants the moto apply does not produce (it applies
# s3_sqs with a bundle): a custom AMI with brs baked in (no bundle, no secret) and an efs_local server
# (models read-only plus results read-write). scripts/checks/terraform runs each through bash -n and
# shellcheck. No provider: `terraform apply` here only evaluates outputs.

terraform {
  required_version = ">= 1.9.0"
}

locals {
  common = {
    install_dir = "/opt/brs"
    region      = "eu-west-1"
    efs_id      = "fs-0123456789abcdef0"
    brs_uid     = 5000
  }
  serve_toml = <<-EOT
    bind = "0.0.0.0:8080"
    secret_file = "/etc/brs/secret"

    [store]
    kind = "fs"
    path = "/mnt/brs/results"
  EOT
  models     = { path = "/mnt/brs/models", access_point = "fsap-0123456789abcdef0", ro = true, dirs = [] }
  results    = { path = "/mnt/brs/results", access_point = "fsap-0123456789abcdef1", ro = false, dirs = [] }
}

output "user_data" {
  value = {
    custom_ami_no_bundle = templatefile("${path.module}/../../templates/user-data.sh.tftpl", merge(local.common, {
      bundle_uri        = ""
      bundle_sha256     = ""
      mounts            = [local.models]
      secret_arn        = ""
      serve_toml        = local.serve_toml
      unit_name         = "brs-serve"
      unit_description  = "brs-serve translation server"
      unit_exec_start   = "/opt/brs/current/bin/brs-serve --config /etc/brs/serve.toml"
      stop_timeout_secs = 150
    }))
    efs_local_serve = templatefile("${path.module}/../../templates/user-data.sh.tftpl", merge(local.common, {
      bundle_uri        = "s3://my-releases/brs/brs-0.1.0-linux-x86_64-cpu.tar.zst"
      bundle_sha256     = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
      mounts            = [local.models, local.results]
      secret_arn        = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:brs-deployment-abc123"
      serve_toml        = local.serve_toml
      unit_name         = "brs-serve"
      unit_description  = "brs-serve translation server"
      unit_exec_start   = "/opt/brs/current/bin/brs-serve --config /etc/brs/serve.toml"
      stop_timeout_secs = 150
    }))
  }
}
