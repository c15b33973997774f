locals {
  models_path = "${local.efs_mount_path}/models"
  # brs-serve's own rule: the only style, else the one named "default".
  default_style = var.default_style != null ? var.default_style : (length(var.styles) == 1 ? keys(var.styles)[0] : "default")

  # /etc/brs/serve.toml, in brs-serve's config format (docs/serving.md; unknown keys are refused).
  # Top-level keys first, then serve_config_extra, then the tables, so that no key of the extra
  # text can land inside a table. terraform/README.md documents the [aws] keys.
  serve_toml = join("\n", compact(concat(
    [
      "# Written at boot by terraform's user data; see terraform/README.md.",
      "bind = \"0.0.0.0:${var.serve_port}\"",
      "results_dir = \"${local.efs_mount_path}/results\"",
      "drain_timeout_secs = ${var.drain_timeout_secs}",
      var.default_style == null ? "" : "default_style = \"${var.default_style}\"",
      trimspace(var.serve_config_extra),
    ],
    # The leading newlines leave a blank line before each table (compact drops empty entries).
    flatten([for name, path in var.styles : ["\n[styles.${name}]", "path = \"${local.models_path}/${path}\""]]),
    [
      "\n[aws]",
      "region = \"${local.region}\"",
      "asg_name = \"${local.asg_name}\"",
      "lifecycle_hook = \"${local.lifecycle_hook}\"",
      "drain_timeout_secs = ${var.drain_timeout_secs}",
      # No heartbeat_timeout_secs: brs-aws accepts it, but brs-serve's [aws] table still refuses it.
      # brs-aws then heartbeats every 60 s, which the >= 120 s hook timeout (validated) leaves room for.
    ],
  )))
}

resource "aws_launch_template" "serve" {
  name_prefix            = "${var.name}-serve-"
  description            = "brs-serve instances"
  image_id               = var.ami_id
  instance_type          = var.instance_type
  vpc_security_group_ids = [aws_security_group.serve.id]
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.serve.arn
  }

  # IMDSv2 only. A hop limit of 1 keeps the credentials away from anything one network hop further
  # (containers, forwarded traffic); brs-serve runs on the host and reads the lifecycle state itself.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = var.root_device_name
    ebs {
      volume_size           = var.root_volume_size_gb
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.kms_key_arn
      delete_on_termination = true
    }
  }

  user_data = base64encode(templatefile("${path.module}/templates/user-data.sh.tftpl", {
    efs_id           = aws_efs_file_system.this.id
    access_point_id  = aws_efs_access_point.brs.id
    mount_path       = local.efs_mount_path
    brs_uid          = var.brs_uid
    data_dirs        = ["models", "results"]
    serve_toml       = local.serve_toml
    unit_name        = "brs-serve"
    unit_description = "brs-serve translation server"
    unit_exec_start  = "${var.serve_binary} --config /etc/brs/serve.toml"
    # systemd sends SIGTERM, then SIGKILL after this: the drain budget plus a margin for exit.
    stop_timeout_secs = var.drain_timeout_secs + 30
  }))

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${var.name}-serve" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, { Name = "${var.name}-serve" })
  }

  tags = local.tags
}

resource "aws_autoscaling_group" "serve" {
  name                      = local.asg_name
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  vpc_zone_identifier       = local.private_subnet_ids
  target_group_arns         = [aws_lb_target_group.serve.arn]
  health_check_type         = "ELB"
  health_check_grace_period = var.warmup_secs
  default_instance_warmup   = var.warmup_secs

  launch_template {
    id      = aws_launch_template.serve.id
    version = aws_launch_template.serve.latest_version
  }

  # A new launch template version (new AMI, new config) replaces instances a few at a time; each old
  # instance leaves through the same lifecycle hook and drain as a scale-in.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 90
      instance_warmup        = var.warmup_secs
    }
  }

  dynamic "tag" {
    for_each = merge(local.tags, { Name = "${var.name}-serve" })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    # Target tracking owns the desired capacity after creation.
    ignore_changes = [desired_capacity]
  }

  # The instances mount EFS at boot; without mount targets their first mount attempts would fail.
  depends_on = [aws_efs_mount_target.this, aws_lb_listener.http]
}

resource "aws_autoscaling_lifecycle_hook" "drain" {
  name                   = local.lifecycle_hook
  autoscaling_group_name = aws_autoscaling_group.serve.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = var.lifecycle_heartbeat_timeout_secs
  # If brs-serve dies mid-drain nobody completes the action; terminating anyway after the timeout is
  # what a scale-in wants (ABANDON would also terminate, but reads as a failure in the activity log).
  default_result = "CONTINUE"
}

resource "aws_autoscaling_policy" "target_tracking" {
  name                      = "${var.name}-target-tracking"
  autoscaling_group_name    = aws_autoscaling_group.serve.name
  policy_type               = "TargetTrackingScaling"
  estimated_instance_warmup = var.warmup_secs

  target_tracking_configuration {
    target_value = var.scaling_target

    predefined_metric_specification {
      predefined_metric_type = var.scaling_metric
      resource_label         = var.scaling_metric == "ALBRequestCountPerTarget" ? "${aws_lb.this.arn_suffix}/${aws_lb_target_group.serve.arn_suffix}" : null
    }
  }

  # The request-count metric exists only once the target group is behind a listener.
  depends_on = [aws_lb_listener.http, aws_lb_listener.https]
}
