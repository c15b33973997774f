output "alb_dns_name" {
  description = "DNS name of the load balancer (point your domain's alias record at it)."
  value       = aws_lb.this.dns_name
}

output "url" {
  description = "Base URL of the Auto Scaling tier."
  value       = "${var.certificate_arn == null ? "http" : "https"}://${aws_lb.this.dns_name}"
}

output "ami_id" {
  description = "AMI the instances boot (ami_id, or the latest Amazon Linux 2023 from the public SSM parameter at plan time)."
  value       = local.ami_id
}

output "asg_name" {
  description = "Auto Scaling group name of the HTTP tier ([aws].asg_name in its serve.toml)."
  value       = aws_autoscaling_group.this["serve"].name
}

output "asg_arn" {
  description = "ARN of the HTTP tier's group (the only group the serving role's lifecycle permissions cover)."
  value       = aws_autoscaling_group.this["serve"].arn
}

output "lifecycle_hook_name" {
  description = "Termination lifecycle hook of the HTTP tier ([aws].lifecycle_hook in serve.toml)."
  value       = aws_autoscaling_lifecycle_hook.drain["serve"].name
}

output "launch_template_id" {
  description = "Launch template of the serving instances."
  value       = aws_launch_template.this["serve"].id
}

output "worker_asg_name" {
  description = "Auto Scaling group of the queue workers, or null without them."
  value       = local.workers ? aws_autoscaling_group.this["worker"].name : null
}

output "worker_asg_arn" {
  description = "ARN of the queue workers' group, or null."
  value       = local.workers ? aws_autoscaling_group.this["worker"].arn : null
}

output "worker_launch_template_id" {
  description = "Launch template of the queue workers, or null."
  value       = local.workers ? aws_launch_template.this["worker"].id : null
}

output "target_group_arn" {
  description = "Target group of the serving instances."
  value       = aws_lb_target_group.serve.arn
}

output "efs_id" {
  description = "EFS file system holding the models (models/STYLE/ckpt-*, latest) and, with efs_local, the results."
  value       = aws_efs_file_system.this.id
}

output "efs_access_point_ids" {
  description = "Access points by use: models (read-only for serving), training (read-write /brs), results (efs_local only)."
  value       = { for k, ap in aws_efs_access_point.this : k => ap.id }
}

output "jobs_bucket" {
  description = "S3 bucket of the store's namespaces (store-namespaces.json: inputs/, jobs/, results/, dedup/, health/) with s3_sqs, or null."
  value       = local.s3_sqs ? aws_s3_bucket.jobs[0].id : null
}

output "jobs_bucket_arn" {
  description = "ARN of the jobs bucket (s3_sqs), or null."
  value       = local.jobs_bucket_arn
}

output "jobs_queue_arn" {
  description = "ARN of the job queue (s3_sqs), or null."
  value       = local.queue_arn
}

output "jobs_queue_url" {
  description = "SQS queue of job items (s3_sqs), or null."
  value       = local.s3_sqs ? aws_sqs_queue.jobs[0].url : null
}

output "jobs_dlq_url" {
  description = "Dead-letter queue of job items that failed max_receives times (s3_sqs), or null."
  value       = local.s3_sqs ? aws_sqs_queue.dlq[0].url : null
}

output "secret_arn" {
  description = "Secrets Manager secret holding the deployment's HMAC key (/etc/brs/secret on the instances, BRS_SECRET_ARN of the Lambda functions)."
  value       = aws_secretsmanager_secret.deployment.arn
}

output "web_acl_arn" {
  description = "WAF web ACL on the load balancer, or null when enable_waf is false."
  value       = var.enable_waf ? aws_wafv2_web_acl.alb[0].arn : null
}

output "vpc_id" {
  description = "VPC in use (created or given)."
  value       = local.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets of instances, mount targets and Lambda ENIs."
  value       = local.private_subnet_ids
}

output "role_arns" {
  description = "IAM role of each kind of compute (serve, worker, training, lambda-api, lambda-worker; those enabled)."
  value       = { for k, r in aws_iam_role.this : k => r.arn }
}

output "serve_toml" {
  description = "The /etc/brs/serve.toml the user data writes on every serving instance."
  value       = local.serve_toml["serve"]
}

output "worker_serve_toml" {
  description = "The /etc/brs/serve.toml of the queue workers, or null."
  value       = local.workers ? local.serve_toml["worker"] : null
}

output "lambda_function_names" {
  description = "Lambda functions by role (lambda-api, lambda-worker; those enabled)."
  value       = { for k, f in aws_lambda_function.this : k => f.function_name }
}

output "lambda_function_url" {
  description = "Function URL of the Lambda HTTP variant, or null when disabled."
  value       = var.enable_lambda ? aws_lambda_function_url.api[0].function_url : null
}

output "training_instance_id" {
  description = "Training instance, or null when disabled."
  value       = var.enable_training ? aws_instance.training[0].id : null
}

output "alb_arn" {
  description = "ARN of the load balancer (the WAF web ACL is associated with it)."
  value       = aws_lb.this.arn
}
