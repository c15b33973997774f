# Test root for scripts/checks/terraform: the module in ../.. applied against a local moto server.
# The endpoints live here, never in the module, so the module stays exactly what real AWS gets.

terraform {
  required_version = ">= 1.11.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}

variable "moto_endpoint" {
  description = "Base URL of the moto server (loopback), e.g. http://127.0.0.1:5000."
  type        = string

  validation {
    condition     = can(regex("^http://127\\.0\\.0\\.1:[0-9]+$", var.moto_endpoint))
    error_message = "moto_endpoint must be http://127.0.0.1:PORT: these tests only talk to loopback."
  }
}

variable "bundle_sha256" {
  description = "Hash of the (fictitious) bundle; the check plans a second value to see the groups roll."
  type        = string
  default     = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
}

variable "enable_lambda" {
  description = "Also apply the Lambda variant (moto stores it; nothing is invoked)."
  type        = bool
  default     = true
}

variable "enable_training" {
  description = "Also apply the training instance."
  type        = bool
  default     = true
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    autoscaling    = var.moto_endpoint
    cloudwatch     = var.moto_endpoint
    cloudwatchlogs = var.moto_endpoint
    ec2            = var.moto_endpoint
    efs            = var.moto_endpoint
    elbv2          = var.moto_endpoint
    iam            = var.moto_endpoint
    lambda         = var.moto_endpoint
    s3             = var.moto_endpoint
    secretsmanager = var.moto_endpoint
    sqs            = var.moto_endpoint
    ssm            = var.moto_endpoint
    sts            = var.moto_endpoint
    wafv2          = var.moto_endpoint
  }
}

module "brs" {
  source = "../.."

  name          = "brs-moto"
  instance_type = "c5.large"
  min_size      = 1
  max_size      = 3
  tags          = { Environment = "moto-test" }

  # moto cannot issue an ACM certificate, so the HTTP listener forwards (and carries the /metrics rule).
  allow_plain_http = true

  # No ami_id: the groups boot the AL2023 AMI named by the public SSM parameter (moto serves it) and
  # install this bundle at boot.
  bundle_s3_uri = "s3://brs-moto-releases/v0.1.0/brs-0.1.0-linux-x86_64-cpu.tar.zst"
  bundle_sha256 = var.bundle_sha256

  # store_mode defaults to s3_sqs: bucket, queue + DLQ, workers and the worker Lambda are applied, so
  # all four roles whose policies tests/policies.json records exist (serve, worker, lambda-api,
  # lambda-worker).
  enable_workers              = true
  max_receives                = 4
  s3_force_destroy            = true
  secret_recovery_window_days = 0
  enable_lambda_worker        = var.enable_lambda

  styles             = { anime = "anime", male = "runs/male" }
  default_style      = "anime"
  serve_config_extra = <<-EOT
    max_batch = 4
    queue_depth = 16
  EOT

  enable_lambda    = var.enable_lambda
  lambda_image_uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/brs-lambda:test"
  lambda_engine    = "onnx"

  enable_training  = var.enable_training
  training_ami_id  = "ami-760aaa0f" # an Amazon Linux AMI moto knows (aws_instance looks up its root device)
  training_command = "/opt/brs/current/bin/brs-train train --config /mnt/brs/data/train.toml --resume"
}

# Every output of the module, for check_resources.py.
output "brs" {
  value = module.brs
}
