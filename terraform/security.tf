# One security group per role; every rule names its peer group, so the only CIDR-based ingress in the
# whole deployment is clients -> ALB, and the VPC -> the workers' operations port (worker_ops).

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "brs load balancer: clients in, brs-serve out"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-alb" })
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  #checkov:skip=CKV_AWS_260:a public web service: port 80 from ingress_cidrs only redirects to HTTPS once certificate_arn is set
  for_each          = toset(var.ingress_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "HTTP (redirected to HTTPS when a certificate is set)"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each          = var.certificate_arn == null ? toset([]) : toset(var.ingress_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "alb_to_serve" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Requests and health checks to brs-serve"
  referenced_security_group_id = aws_security_group.serve.id
  ip_protocol                  = "tcp"
  from_port                    = var.serve_port
  to_port                      = var.serve_port
}

resource "aws_security_group" "serve" {
  name        = "${var.name}-serve"
  description = "brs-serve instances: ALB in; EFS and AWS APIs out"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-serve" })
}

resource "aws_vpc_security_group_ingress_rule" "serve_from_alb" {
  security_group_id            = aws_security_group.serve.id
  description                  = "Requests and health checks from the ALB"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = var.serve_port
  to_port                      = var.serve_port
}

# HTTPS anywhere: the Auto Scaling API (lifecycle actions), SSM, and package repositories through NAT.
resource "aws_vpc_security_group_egress_rule" "serve_https" {
  security_group_id = aws_security_group.serve.id
  description       = "AWS APIs and package repositories"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "serve_efs" {
  security_group_id            = aws_security_group.serve.id
  description                  = "NFS to EFS"
  referenced_security_group_id = aws_security_group.efs.id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

# The description predates the operations port (worker_ops below) and stays as it was: a new
# description replaces the group, which the workers' instances hold.
resource "aws_security_group" "worker" {
  count       = local.workers ? 1 : 0
  name        = "${var.name}-worker"
  description = "brs-serve queue workers: nothing in; EFS and AWS APIs out"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-worker" })
}

# /healthz, /readyz and /metrics of `brs-serve worker` (worker_ops_port), unauthenticated: from the
# VPC only, where a Prometheus scraper or an operator's shell runs (its group is not this module's,
# so the rule names the VPC's CIDR). No load balancer or internet path leads here.
resource "aws_vpc_security_group_ingress_rule" "worker_ops" {
  count             = local.workers && var.worker_ops_port != null ? 1 : 0
  security_group_id = aws_security_group.worker[0].id
  description       = "brs-serve worker operations port (health, metrics) from within the VPC"
  cidr_ipv4         = local.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = var.worker_ops_port
  to_port           = var.worker_ops_port
}

resource "aws_vpc_security_group_egress_rule" "worker_https" {
  count             = local.workers ? 1 : 0
  security_group_id = aws_security_group.worker[0].id
  description       = "AWS APIs (S3, SQS, Auto Scaling) and package repositories"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "worker_efs" {
  count                        = local.workers ? 1 : 0
  security_group_id            = aws_security_group.worker[0].id
  description                  = "NFS to EFS"
  referenced_security_group_id = aws_security_group.efs.id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

resource "aws_security_group" "efs" {
  name        = "${var.name}-efs"
  description = "brs EFS mount targets: NFS only from brs compute"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-efs" })
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_serve" {
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from brs-serve instances"
  referenced_security_group_id = aws_security_group.serve.id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_worker" {
  count                        = local.workers ? 1 : 0
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from the queue workers"
  referenced_security_group_id = aws_security_group.worker[0].id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_lambda" {
  count                        = local.any_lambda ? 1 : 0
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from the Lambda variant"
  referenced_security_group_id = aws_security_group.lambda[0].id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_training" {
  count                        = var.enable_training ? 1 : 0
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from the training instance"
  referenced_security_group_id = aws_security_group.training[0].id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

# The description predates the Secrets Manager egress (lambda_https below) and stays as it was: a new
# description replaces the group, and deleting a group Lambda's ENIs still hold blocks for many minutes.
resource "aws_security_group" "lambda" {
  count       = local.any_lambda ? 1 : 0
  name        = "${var.name}-lambda"
  description = "brs Lambda ENIs: EFS out, and HTTPS out for S3 and SQS with s3_sqs"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-lambda" })
}

resource "aws_vpc_security_group_egress_rule" "lambda_efs" {
  count                        = local.any_lambda ? 1 : 0
  security_group_id            = aws_security_group.lambda[0].id
  description                  = "NFS to EFS"
  referenced_security_group_id = aws_security_group.efs.id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

# Every function reads the deployment secret at init; with s3_sqs it also calls S3 and SQS.
resource "aws_vpc_security_group_egress_rule" "lambda_https" {
  count             = local.any_lambda ? 1 : 0
  security_group_id = aws_security_group.lambda[0].id
  description       = "Secrets Manager, S3 and SQS APIs"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_security_group" "training" {
  count       = var.enable_training ? 1 : 0
  name        = "${var.name}-training"
  description = "brs training instance: EFS and HTTPS out, nothing in"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-training" })
}

resource "aws_vpc_security_group_egress_rule" "training_https" {
  count             = var.enable_training ? 1 : 0
  security_group_id = aws_security_group.training[0].id
  description       = "AWS APIs, SSM and package repositories"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "training_efs" {
  count                        = var.enable_training ? 1 : 0
  security_group_id            = aws_security_group.training[0].id
  description                  = "NFS to EFS"
  referenced_security_group_id = aws_security_group.efs.id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}
