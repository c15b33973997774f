output "alb_dns_name" {
  description = "DNS name of the load balancer (point your domain's alias record at it)."
  value       = aws_lb.this.dns_name
}

output "url" {
  description = "Base URL of the Auto Scaling tier."
  value       = "${var.certificate_arn == null ? "http" : "https"}://${aws_lb.this.dns_name}"
}

output "asg_name" {
  description = "Auto Scaling group name ([aws].asg_name in serve.toml)."
  value       = aws_autoscaling_group.serve.name
}

output "asg_arn" {
  description = "Auto Scaling group ARN (the only resource the instances' lifecycle permissions cover)."
  value       = aws_autoscaling_group.serve.arn
}

output "lifecycle_hook_name" {
  description = "Termination lifecycle hook ([aws].lifecycle_hook in serve.toml)."
  value       = aws_autoscaling_lifecycle_hook.drain.name
}

output "launch_template_id" {
  description = "Launch template of the serving instances."
  value       = aws_launch_template.serve.id
}

output "target_group_arn" {
  description = "Target group of the serving instances."
  value       = aws_lb_target_group.serve.arn
}

output "efs_id" {
  description = "EFS file system holding models (models/STYLE/ckpt-*, latest) and results."
  value       = aws_efs_file_system.this.id
}

output "efs_access_point_id" {
  description = "Access point every brs client mounts through."
  value       = aws_efs_access_point.brs.id
}

output "vpc_id" {
  description = "VPC in use (created or given)."
  value       = local.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets of instances, mount targets and Lambda ENIs."
  value       = local.private_subnet_ids
}

output "serve_role_arn" {
  description = "IAM role of the serving instances."
  value       = aws_iam_role.serve.arn
}

output "serve_toml" {
  description = "The /etc/brs/serve.toml the user data writes on every serving instance."
  value       = local.serve_toml
}

output "lambda_function_name" {
  description = "Name of the Lambda variant, or null when disabled."
  value       = var.enable_lambda ? aws_lambda_function.api[0].function_name : null
}

output "lambda_function_url" {
  description = "Function URL of the Lambda variant, or null when disabled."
  value       = var.enable_lambda ? aws_lambda_function_url.api[0].function_url : null
}

output "training_instance_id" {
  description = "Training instance, or null when disabled."
  value       = var.enable_training ? aws_instance.training[0].id : null
}
