locals {
  # Names used both as resource names and inside serve.toml; fixed strings (not resource attributes) so
  # the launch template can name the group and hook that are created after it without a cycle.
  asg_name       = "${var.name}-serve"
  lifecycle_hook = "${var.name}-drain"
  efs_mount_path = "/mnt/brs"

  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id

  tags = merge({ Project = "brs", ManagedBy = "terraform" }, var.tags)
}
