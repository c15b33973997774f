# Test root for scripts/checks/terraform: the module in ../.. applied against a local moto server.
# The endpoints live here, never in the module, so the module stays exactly what real AWS gets.

terraform {
  required_version = ">= 1.9.0"
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

  endpoints {
    autoscaling    = var.moto_endpoint
    cloudwatch     = var.moto_endpoint
    cloudwatchlogs = var.moto_endpoint
    ec2            = var.moto_endpoint
    efs            = var.moto_endpoint
    elbv2          = var.moto_endpoint
    iam            = var.moto_endpoint
    lambda         = var.moto_endpoint
    sts            = var.moto_endpoint
  }
}

module "brs" {
  source = "../.."

  name          = "brs-moto"
  ami_id        = "ami-760aaa0f" # an Amazon Linux AMI moto knows (aws_instance looks up its root device)
  instance_type = "c5.large"
  min_size      = 1
  max_size      = 3
  tags          = { Environment = "moto-test" }

  styles             = { anime = "anime", male = "runs/male" }
  default_style      = "anime"
  serve_config_extra = <<-EOT
    max_batch = 4
    queue_depth = 16
  EOT

  enable_lambda    = var.enable_lambda
  lambda_image_uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/brs-lambda:test"

  enable_training  = var.enable_training
  training_ami_id  = "ami-760aaa0f"
  training_command = "/usr/local/bin/brs-train train --config /mnt/brs/data/train.toml"
}

output "asg_name" {
  value = module.brs.asg_name
}

output "lifecycle_hook_name" {
  value = module.brs.lifecycle_hook_name
}

output "launch_template_id" {
  value = module.brs.launch_template_id
}

output "efs_id" {
  value = module.brs.efs_id
}

output "efs_access_point_id" {
  value = module.brs.efs_access_point_id
}

output "target_group_arn" {
  value = module.brs.target_group_arn
}

output "asg_arn" {
  value = module.brs.asg_arn
}

output "serve_toml" {
  value = module.brs.serve_toml
}

output "lambda_function_name" {
  value = module.brs.lambda_function_name
}

output "training_instance_id" {
  value = module.brs.training_instance_id
}
