terraform {
  # 1.11: write-only attributes (the deployment secret's value stays out of state, secret.tf); 1.9
  # already let validation blocks refer to other variables, which several below do.
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Tested with 5.100.0 (tests/moto), which has the ephemeral random password and the write-only
      # secret_string_wo that secret.tf relies on. 6.x changed several resource schemas used here.
      version = ">= 5.100.0, < 6.0.0"
    }
  }
}
