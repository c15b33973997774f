locals {
  training_user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", merge(local.user_data_common, {
    bundle_uri    = try(local.bundles.training.uri, "")
    bundle_sha256 = try(local.bundles.training.sha256, "")
    # The whole /brs tree, read-write: the trainer writes models/ and reads data/.
    mounts           = [{ path = local.efs_mount_path, access_point = aws_efs_access_point.this["training"].id, ro = false, dirs = ["models", "data"] }]
    secret_arn       = ""
    serve_toml       = ""
    unit_name        = "brs-train"
    unit_description = "brs-train, checkpoints to EFS"
    unit_exec_start  = coalesce(var.training_command, "/bin/false")
    # brs-train writes a checkpoint atomically and resumes from latest, so a stop loses at most the
    # steps since the last checkpoint.
    stop_timeout_secs = 120
  }))
}

resource "aws_instance" "training" {
  #checkov:skip=CKV_AWS_126:one training job needs no 1-minute (billed) EC2 metrics; brs-train writes its own progress to metrics.jsonl
  count                  = var.enable_training ? 1 : 0
  ami                    = local.training_ami
  instance_type          = var.training_instance_type
  subnet_id              = local.private_subnet_ids[0]
  vpc_security_group_ids = [aws_security_group.training[0].id]
  iam_instance_profile   = aws_iam_instance_profile.instance["training"].name
  ebs_optimized          = true
  # A shutdown from inside (end of training) stops rather than deletes: the root volume keeps its cache.
  instance_initiated_shutdown_behavior = "stop"

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_size           = var.training_root_volume_size_gb
    volume_type           = "gp3"
    encrypted             = true
    kms_key_id            = var.kms_key_arn
    delete_on_termination = true
  }

  user_data_base64 = base64encode(local.training_user_data)

  tags        = merge(local.tags, { Name = "${var.name}-training" })
  volume_tags = merge(local.tags, { Name = "${var.name}-training" })

  depends_on = [aws_efs_mount_target.this]

  lifecycle {
    # A new AMI release must not silently replace a running training job.
    ignore_changes = [ami, user_data_base64]
  }
}
