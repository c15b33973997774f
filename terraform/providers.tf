# No provider block on purpose: this directory is a module. Used directly as a root module, the AWS
# provider takes its region and credentials from the environment (AWS_REGION, AWS_PROFILE, ...);
# callers that need more (default tags, assume_role, or the moto endpoints in tests/moto) configure
# the provider themselves and call this directory as a module. A provider block here would make that
# impossible, and it would tempt someone to add an "endpoints" variable that real deployments never need.

data "aws_region" "current" {}
data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
