# Scaling of the queue workers (store_mode s3_sqs): target tracking on the backlog per in-service
# instance, computed with metric math from the queue's visible messages and the group's in-service
# count, as AWS recommends for queue consumers (no custom metric to publish).

locals {
  worker_metrics = local.workers ? {
    visible = {
      namespace = "AWS/SQS"
      name      = "ApproximateNumberOfMessagesVisible"
      dimension = { name = "QueueName", value = aws_sqs_queue.jobs[0].name }
      stat      = "Sum"
    }
    workers = {
      namespace = "AWS/AutoScaling"
      name      = "GroupInServiceInstances"
      dimension = { name = "AutoScalingGroupName", value = aws_autoscaling_group.this["worker"].name }
      stat      = "Average"
    }
    desired = {
      namespace = "AWS/AutoScaling"
      name      = "GroupDesiredCapacity"
      dimension = { name = "AutoScalingGroupName", value = aws_autoscaling_group.this["worker"].name }
      stat      = "Average"
    }
  } : {}
}

resource "aws_autoscaling_policy" "worker_backlog" {
  count                     = local.workers ? 1 : 0
  name                      = "${var.name}-worker-backlog"
  autoscaling_group_name    = aws_autoscaling_group.this["worker"].name
  policy_type               = "TargetTrackingScaling"
  estimated_instance_warmup = var.warmup_secs

  target_tracking_configuration {
    target_value = var.worker_backlog_target

    customized_metric_specification {
      dynamic "metrics" {
        for_each = { for k, m in local.worker_metrics : k => m if k != "desired" }
        content {
          id          = metrics.key
          return_data = false
          metric_stat {
            stat = metrics.value.stat
            metric {
              namespace   = metrics.value.namespace
              metric_name = metrics.value.name
              dimensions {
                name  = metrics.value.dimension.name
                value = metrics.value.dimension.value
              }
            }
          }
        }
      }

      metrics {
        id          = "backlog_per_worker"
        label       = "Job items waiting per in-service worker"
        expression  = "visible / workers"
        return_data = true
      }
    }
  }
}

# Target tracking scales in proportion to the instances it has, so from zero it has nothing to scale:
# this alarm starts the first worker as soon as items wait while the group wants none (desired, not
# in-service, so instances still booting are never cut back to one); target tracking takes over.
resource "aws_autoscaling_policy" "worker_from_zero" {
  count                  = local.workers ? 1 : 0
  name                   = "${var.name}-worker-from-zero"
  autoscaling_group_name = aws_autoscaling_group.this["worker"].name
  policy_type            = "StepScaling"
  adjustment_type        = "ExactCapacity"

  step_adjustment {
    metric_interval_lower_bound = 0
    scaling_adjustment          = 1
  }
}

resource "aws_cloudwatch_metric_alarm" "worker_from_zero" {
  count               = local.workers ? 1 : 0
  alarm_name          = "${var.name}-worker-from-zero"
  alarm_description   = "Job items wait and the worker group wants none: start one."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_autoscaling_policy.worker_from_zero[0].arn]

  dynamic "metric_query" {
    for_each = { for k, m in local.worker_metrics : k => m if k != "workers" }
    content {
      id = metric_query.key
      metric {
        namespace   = metric_query.value.namespace
        metric_name = metric_query.value.name
        dimensions  = { (metric_query.value.dimension.name) = metric_query.value.dimension.value }
        stat        = metric_query.value.stat
        period      = 60
      }
    }
  }

  metric_query {
    id          = "idle_with_backlog"
    label       = "1 when items wait and the group wants no worker"
    expression  = "IF(visible > 0 AND desired == 0, 1, 0)"
    return_data = true
  }

  tags = local.tags
}
