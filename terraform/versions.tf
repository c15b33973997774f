terraform {
  # 1.9 is the first release whose validation blocks may refer to other variables; several below do.
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Tested with 5.100.0 (tests/moto). 6.x changed several resource schemas used here.
      version = ">= 5.60.0, < 6.0.0"
    }
  }
}
