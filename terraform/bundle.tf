# What the instances boot: the latest Amazon Linux 2023 (or a custom AMI) plus the release bundle that
# user data fetches from S3, verifies and unpacks (templates/user-data.sh.tftpl).

data "aws_ssm_parameter" "al2023" {
  count = var.ami_id == null || (var.enable_training && var.training_ami_id == null) ? 1 : 0
  name  = var.ami_ssm_parameter
}

locals {
  al2023_ami   = try(data.aws_ssm_parameter.al2023[0].insecure_value, null)
  ami_id       = coalesce(var.ami_id, local.al2023_ami)
  training_ami = coalesce(var.training_ami_id, var.ami_id, local.al2023_ami)

  # Each instance kind's bundle (training may take another flavour), with the one object ARN its role
  # may read: s3://BUCKET/KEY -> arn:aws:s3:::BUCKET/KEY.
  bundles = { for k, b in {
    main     = { uri = var.bundle_s3_uri, sha256 = var.bundle_sha256 }
    training = var.training_bundle_s3_uri != null ? { uri = var.training_bundle_s3_uri, sha256 = var.training_bundle_sha256 } : { uri = var.bundle_s3_uri, sha256 = var.bundle_sha256 }
    } : k => b.uri == null ? null : merge(b, {
      arn = "arn:${local.partition}:s3:::${trimprefix(b.uri, "s3://")}"
  }) }

  # templatefile() arguments every instance kind shares; each adds its mounts, config and unit.
  user_data_common = {
    install_dir = var.install_dir
    region      = local.region
    efs_id      = aws_efs_file_system.this.id
    brs_uid     = var.brs_uid
  }
}
