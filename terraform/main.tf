locals {
  # Names used both as resource names and inside serve.toml; fixed strings (not resource attributes) so
  # the launch templates can name the groups and hooks that are created after them without a cycle.
  asg_name              = "${var.name}-serve"
  lifecycle_hook        = "${var.name}-drain"
  worker_asg_name       = "${var.name}-worker"
  worker_lifecycle_hook = "${var.name}-worker-drain"
  efs_mount_path        = "/mnt/brs"

  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id

  # Jobs backend: S3 + SQS (any instance finishes any job) or EFS + an in-process queue.
  s3_sqs          = var.store_mode == "s3_sqs"
  workers         = local.s3_sqs && var.enable_workers
  lambda_worker   = local.s3_sqs && var.enable_lambda_worker
  any_lambda      = var.enable_lambda || local.lambda_worker
  bin             = "${var.install_dir}/current/bin"
  secret_file     = "/etc/brs/secret"
  trusted_proxies = [local.vpc_cidr]

  tags = merge({ Project = "brs", ManagedBy = "terraform" }, var.tags)
}
