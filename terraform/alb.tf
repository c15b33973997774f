resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_150:deletion_protection is a variable, off by default so that terraform destroy works; turn it on in production
  #checkov:skip=CKV_AWS_91:requests are logged by brs-serve's access log and WAF's log group; ALB logs would need a bucket open to the regional ELB account
  #checkov:skip=CKV2_AWS_76:the Log4j rules live in AWSManagedRulesKnownBadInputsRuleSet, attached (waf.tf); the check also wants AnonymousIpList, which would block every user behind a VPN
  name                       = "${var.name}-alb"
  load_balancer_type         = "application"
  internal                   = var.alb_internal
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.alb_internal ? local.private_subnet_ids : local.public_subnet_ids
  idle_timeout               = var.alb_idle_timeout_secs
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  tags                       = merge(local.tags, { Name = "${var.name}-alb" })
}

resource "aws_lb_target_group" "serve" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB (HTTPS listener with certificate_arn); instances sit in private subnets and admit only the ALB's security group
  name        = "${var.name}-serve"
  port        = var.serve_port
  protocol    = "HTTP"
  vpc_id      = local.vpc_id
  target_type = "instance"
  # The ALB keeps in-flight requests to a leaving instance for this long; brs-serve's own drain (SIGTERM
  # or lifecycle hook) uses the same budget, so neither side cuts the other short.
  deregistration_delay = var.drain_timeout_secs
  # Inference takes ~1 s per image: round robin would pile requests on an instance still busy with a
  # batch, so route to the instance with the fewest requests outstanding.
  load_balancing_algorithm_type = "least_outstanding_requests"

  health_check {
    path                = "/readyz"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = merge(local.tags, { Name = "${var.name}-serve" })
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = var.certificate_arn == null ? "forward" : "redirect"
    target_group_arn = var.certificate_arn == null ? aws_lb_target_group.serve.arn : null

    dynamic "redirect" {
      for_each = var.certificate_arn == null ? [] : [1]
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }

  tags = local.tags
}

resource "aws_lb_listener" "https" {
  count             = var.certificate_arn == null ? 0 : 1
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.serve.arn
  }

  tags = local.tags
}

# /metrics is for the VPC (a Prometheus scraper next to the instances), not for the internet: its
# counters describe load, clients and errors. The listener that forwards to brs-serve answers it
# itself, before the forward, with brs-serve's own "no route" shape. With a certificate that is the
# HTTPS listener (port 80 only redirects), without one the HTTP listener.
resource "aws_lb_listener_rule" "metrics_not_found" {
  listener_arn = var.certificate_arn == null ? aws_lb_listener.http.arn : aws_lb_listener.https[0].arn
  priority     = 1

  condition {
    path_pattern {
      values = ["/metrics", "/metrics/*"]
    }
  }

  action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      status_code  = "404"
      message_body = jsonencode({ error = { code = "no_route", message = "route /metrics not found" } })
    }
  }

  tags = local.tags
}
