locals {
  models_path = "${local.efs_mount_path}/models"
  # brs-serve's own rule: the only style, else the one named "default".
  default_style = var.default_style != null ? var.default_style : (length(var.styles) == 1 ? keys(var.styles)[0] : "default")

  # The two groups running brs-serve: the HTTP tier behind the load balancer and, with s3_sqs, the
  # queue workers (no HTTP API; an operations port on worker_ops_port). They share the launch
  # template shape and the serve.toml body.
  groups = merge(
    {
      serve = {
        asg_name      = local.asg_name
        hook          = local.lifecycle_hook
        instance_type = var.instance_type
        min_size      = var.min_size
        max_size      = var.max_size
        desired       = var.desired_capacity
        target_groups = [aws_lb_target_group.serve.arn]
        health_check  = "ELB"
        sg            = aws_security_group.serve.id
        exec_start    = "${local.bin}/brs-serve --config /etc/brs/serve.toml"
        description   = "brs-serve translation server"
      }
    },
    # The workers' health check is EC2: an Auto Scaling group checks an instance itself or through a
    # target group, and a target group checks only behind a load balancer, which workers have none
    # of. A worker process that dies is restarted by systemd (Restart=on-failure); one that cannot
    # start takes no messages, which wait for the other workers (the backlog scales the group out).
    # /healthz, /readyz and /metrics on worker_ops_port are for the scraper and for people.
    local.workers ? {
      worker = {
        asg_name      = local.worker_asg_name
        hook          = local.worker_lifecycle_hook
        instance_type = var.worker_instance_type
        min_size      = var.worker_min_size
        max_size      = var.worker_max_size
        desired       = null
        target_groups = []
        health_check  = "EC2"
        sg            = aws_security_group.worker[0].id
        exec_start    = "${local.bin}/brs-serve worker --config /etc/brs/serve.toml"
        description   = "brs-serve queue worker"
      }
    } : {},
  )

  # /etc/brs/serve.toml, in brs-serve's config format (docs/serving.md; unknown keys are refused).
  # Top-level keys first, then serve_config_extra, then the tables, so that no key of the extra text
  # can land inside a table. terraform/README.md documents every key written here.
  serve_toml_body = compact(concat(
    [
      "# Written at boot by terraform's user data; see terraform/README.md.",
      "bind = \"0.0.0.0:${var.serve_port}\"",
      "drain_timeout = \"${var.drain_timeout_secs}s\"",
      var.default_style == null ? "" : "default_style = \"${var.default_style}\"",
      "secret_file = \"${local.secret_file}\"",
      "trusted_proxies = [${join(", ", [for c in local.trusted_proxies : "\"${c}\""])}]",
      trimspace(var.serve_config_extra),
    ],
    # The leading newlines leave a blank line before each table (compact drops empty entries).
    flatten([for name, path in var.styles : ["\n[styles.${name}]", "path = \"${local.models_path}/${path}\""]]),
    local.s3_sqs ? [
      "\n[store]",
      "kind = \"s3\"",
      "bucket = \"${aws_s3_bucket.jobs[0].id}\"",
      "region = \"${local.region}\"",
      "\n[queue]",
      "kind = \"sqs\"",
      "url = \"${aws_sqs_queue.jobs[0].url}\"",
      "region = \"${local.region}\"",
      "visibility_timeout = \"${var.queue_visibility_timeout_secs}s\"",
      "wait_time = \"${var.queue_wait_time_secs}s\"",
      "batch_size = ${var.queue_batch_size}",
      # The redrive policy's maxReceiveCount (sqs.tf) is the same variable.
      "max_receives = ${var.max_receives}",
      ] : [
      "\n[store]",
      "kind = \"fs\"",
      "path = \"${local.efs_mount_path}/results\"",
      "\n[queue]",
      "kind = \"local\"",
    ],
  ))
  # The workers' operations port (worker_ops_port; brs-serve listens on it only as `brs-serve worker`).
  worker_toml = var.worker_ops_port == null ? [] : ["\n[worker]", "ops_bind = \"0.0.0.0:${var.worker_ops_port}\""]
  serve_toml = { for k, g in local.groups : k => join("\n", concat(local.serve_toml_body, k == "worker" ? local.worker_toml : [], [
    "\n[aws]",
    "region = \"${local.region}\"",
    "asg_name = \"${g.asg_name}\"",
    "lifecycle_hook = \"${g.hook}\"",
    "drain_timeout_secs = ${var.drain_timeout_secs}",
    # brs-aws heartbeats every third of the hook's timeout, so two lost heartbeats are survived.
    "heartbeat_timeout_secs = ${var.lifecycle_heartbeat_timeout_secs}",
  ])) }

  # Serving and worker instances mount the models read-only; efs_local servers also the results.
  serve_mounts = concat(
    [{ path = local.models_path, access_point = aws_efs_access_point.this["models"].id, ro = true, dirs = [] }],
    local.s3_sqs ? [] : [{ path = "${local.efs_mount_path}/results", access_point = aws_efs_access_point.this["results"].id, ro = false, dirs = [] }],
  )
  user_data = { for k, g in local.groups : k => templatefile("${path.module}/templates/user-data.sh.tftpl", merge(local.user_data_common, {
    bundle_uri        = try(local.bundles.main.uri, "")
    bundle_sha256     = try(local.bundles.main.sha256, "")
    mounts            = k == "serve" ? local.serve_mounts : slice(local.serve_mounts, 0, 1)
    secret_arn        = aws_secretsmanager_secret.deployment.arn
    serve_toml        = local.serve_toml[k]
    unit_name         = "brs-${k}"
    unit_description  = g.description
    unit_exec_start   = g.exec_start
    stop_timeout_secs = var.drain_timeout_secs + 30
  })) }
}

resource "aws_launch_template" "this" {
  for_each               = local.groups
  name_prefix            = "${var.name}-${each.key}-"
  description            = each.value.description
  image_id               = local.ami_id
  instance_type          = each.value.instance_type
  vpc_security_group_ids = [each.value.sg]
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.instance[each.key].arn
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

  user_data = base64encode(local.user_data[each.key])

  lifecycle {
    # terraform writes the workers' [worker] table; a second one (header or dotted keys) in
    # serve_config_extra would stop every worker at boot with a duplicate-table error.
    precondition {
      condition     = each.key != "worker" || var.worker_ops_port == null || !can(regex("(?m)^\\s*(\\[\\s*\"?worker\"?\\s*[].]|\"?worker\"?\\s*\\.)", var.serve_config_extra))
      error_message = "serve_config_extra must not set [worker]: terraform writes its ops_bind from worker_ops_port (null turns it off)."
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${var.name}-${each.key}" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, { Name = "${var.name}-${each.key}" })
  }

  tags = local.tags
}

resource "aws_autoscaling_group" "this" {
  for_each                  = local.groups
  name                      = each.value.asg_name
  min_size                  = each.value.min_size
  max_size                  = each.value.max_size
  desired_capacity          = each.value.desired
  vpc_zone_identifier       = local.private_subnet_ids
  target_group_arns         = each.value.target_groups
  health_check_type         = each.value.health_check
  health_check_grace_period = var.warmup_secs
  default_instance_warmup   = var.warmup_secs
  # GroupInServiceInstances feeds the workers' backlog-per-instance metric; cheap, so on for both.
  enabled_metrics     = ["GroupInServiceInstances", "GroupDesiredCapacity"]
  metrics_granularity = "1Minute"

  launch_template {
    id      = aws_launch_template.this[each.key].id
    version = aws_launch_template.this[each.key].latest_version
  }

  # A new launch template version (new bundle, AMI or config) replaces the instances: new ones launch
  # first (max_healthy above 100), and each old one leaves through the same lifecycle hook and drain as
  # a scale-in, so capacity never drops below min_healthy_percentage.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = var.instance_refresh_min_healthy_percentage
      max_healthy_percentage = var.instance_refresh_max_healthy_percentage
      instance_warmup        = var.warmup_secs
      # Instances protected from scale-in hold pending jobs: wait for them rather than cut them off.
      scale_in_protected_instances = "Wait"
      skip_matching                = true
    }
  }

  dynamic "tag" {
    for_each = merge(local.tags, { Name = "${var.name}-${each.key}" })
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
  for_each               = local.groups
  name                   = each.value.hook
  autoscaling_group_name = aws_autoscaling_group.this[each.key].name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = var.lifecycle_heartbeat_timeout_secs
  # If brs-serve dies mid-drain nobody completes the action; terminating anyway after the timeout is
  # what a scale-in wants (ABANDON would also terminate, but reads as a failure in the activity log).
  default_result = "CONTINUE"
}

resource "aws_autoscaling_policy" "target_tracking" {
  name                      = "${var.name}-target-tracking"
  autoscaling_group_name    = aws_autoscaling_group.this["serve"].name
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
