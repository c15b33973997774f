# ---------------------------------------------------------------------------------------------------
# Naming and tags
# ---------------------------------------------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (ALB and target group names are limited to 32 characters, hence the short limit)."
  type        = string
  default     = "brs"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "name must be 2-20 characters: lower-case letters, digits and '-', starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.tags : length(k) <= 128 && length(v) <= 256])
    error_message = "Tag keys are limited to 128 characters and values to 256."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for EFS, EBS, the jobs bucket and queues, the deployment secret, the log groups and the Lambda environments. Null uses the AWS-managed keys (aws/elasticfilesystem, aws/ebs, SSE-S3, SQS-managed SSE, ...); encryption is on either way."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]{36}$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/UUID)."
  }
}

# ---------------------------------------------------------------------------------------------------
# Network: either a new VPC (vpc_cidr, az_count) or an existing one (vpc_id plus subnet ids)
# ---------------------------------------------------------------------------------------------------

variable "vpc_id" {
  description = "Existing VPC to deploy into. Null creates a VPC with public and private subnets in az_count zones."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }

  validation {
    condition     = var.vpc_id == null || (length(var.public_subnet_ids) >= 2 && length(var.private_subnet_ids) >= 2)
    error_message = "With vpc_id set, give at least two public_subnet_ids (the ALB needs two zones) and two private_subnet_ids."
  }
}

variable "public_subnet_ids" {
  description = "With vpc_id: public subnets (one per zone) for the load balancer."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "public_subnet_ids must be subnet ids (subnet-...)."
  }
}

variable "private_subnet_ids" {
  description = "With vpc_id: private subnets (one per zone) for instances, EFS mount targets and the Lambda ENIs. They need a route to the internet (NAT) or VPC endpoints for the AWS APIs brs-serve calls."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "private_subnet_ids must be subnet ids (subnet-...)."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC created when vpc_id is null. Subnets are /20s carved from it: public ones from the first eight blocks, private ones from the next eight, so it must be a /16 or larger."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && try(tonumber(split("/", var.vpc_cidr)[1]) <= 16, false)
    error_message = "vpc_cidr must be an IPv4 CIDR of /16 or larger (e.g. 10.40.0.0/16)."
  }
}

variable "az_count" {
  description = "Number of availability zones for a created VPC (2 at least: the ALB requires two)."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6 && floor(var.az_count) == var.az_count
    error_message = "az_count must be a whole number from 2 to 6."
  }
}

variable "nat_gateway_mode" {
  description = "NAT for the private subnets of a created VPC: \"single\" (one gateway, cheapest), \"per_az\" (one per zone, survives a zone outage) or \"none\" (you provide VPC endpoints and an AMI that needs no package downloads)."
  type        = string
  default     = "single"

  validation {
    condition     = contains(["single", "per_az", "none"], var.nat_gateway_mode)
    error_message = "nat_gateway_mode must be single, per_az or none."
  }
}

variable "private_route_table_ids" {
  description = "With vpc_id: the route tables of private_subnet_ids, to which an S3 gateway endpoint is added. Empty (the default) adds none, e.g. when the VPC already has one (a route table takes one S3 gateway endpoint). A created VPC always gets the endpoint on its private route tables."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.private_route_table_ids : can(regex("^rtb-[0-9a-f]{8,17}$", r))])
    error_message = "private_route_table_ids must be route table ids (rtb-...)."
  }

  validation {
    condition     = var.vpc_id != null || length(var.private_route_table_ids) == 0
    error_message = "private_route_table_ids goes with vpc_id; a created VPC uses its own private route tables."
  }
}

variable "ingress_cidrs" {
  description = "Client CIDRs allowed to reach the load balancer on ports 80 and 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.ingress_cidrs) > 0 && alltrue([for c in var.ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "ingress_cidrs must be a non-empty list of IPv4 CIDRs."
  }
}

# ---------------------------------------------------------------------------------------------------
# Load balancer
# ---------------------------------------------------------------------------------------------------

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener; port 80 then redirects to 443. Null serves plain HTTP on port 80, which an internet-facing load balancer accepts only with allow_plain_http = true."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]{36}$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }

  validation {
    condition     = var.certificate_arn != null || var.alb_internal || var.allow_plain_http
    error_message = "Without certificate_arn an internet-facing load balancer would carry photos, results and API keys in plain HTTP: set certificate_arn (an ACM certificate), or alb_internal = true, or allow_plain_http = true to accept plain HTTP knowingly (a first test)."
  }
}

variable "allow_plain_http" {
  description = "Accept an internet-facing load balancer without certificate_arn, serving plain HTTP on port 80: for a first test before a certificate exists. Ignored once certificate_arn is set (port 80 then redirects to HTTPS) or with alb_internal."
  type        = bool
  default     = false
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = can(regex("^ELBSecurityPolicy-", var.ssl_policy))
    error_message = "ssl_policy must name an ELB security policy (ELBSecurityPolicy-...)."
  }
}

variable "alb_internal" {
  description = "Make the load balancer internal (private subnets, no public address)."
  type        = bool
  default     = false
}

variable "alb_idle_timeout_secs" {
  description = "ALB idle timeout. It must exceed the longest silent gap of a request: brs-serve's request timeout for /v1/translate and the keep-alive interval of the jobs event stream."
  type        = number
  default     = 120

  validation {
    condition     = var.alb_idle_timeout_secs >= 1 && var.alb_idle_timeout_secs <= 4000
    error_message = "alb_idle_timeout_secs must be from 1 to 4000 (the ALB limit)."
  }
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion (turn on in production; the tests need it off)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------------
# brs-serve instances and the Auto Scaling group
# ---------------------------------------------------------------------------------------------------

variable "ami_id" {
  description = "Custom AMI for the serving, worker and training instances. Null (the default) boots the latest Amazon Linux 2023 (ami_ssm_parameter) and installs the release bundle from bundle_s3_uri at boot; a custom AMI must have systemd, amazon-efs-utils and either the AWS CLI plus zstd (with bundle_s3_uri) or brs at install_dir (without)."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "ami_ssm_parameter" {
  description = "Public SSM parameter naming the AMI used when ami_id is null: the latest Amazon Linux 2023 (glibc 2.34, the oldest glibc the bundle supports)."
  type        = string
  default     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"

  validation {
    condition     = can(regex("^/aws/service/", var.ami_ssm_parameter))
    error_message = "ami_ssm_parameter must be a public parameter under /aws/service/."
  }
}

variable "bundle_s3_uri" {
  description = "S3 URI of the release bundle (scripts/package: brs-VERSION-linux-x86_64-cpu.tar.zst, or -onnx.tar.zst for serving without libtorch, float32 on ONNX Runtime; the onnx bundle has no brs-train, so a training instance then needs training_bundle_s3_uri) that user data installs at install_dir. Required unless ami_id names an AMI with brs already installed. Changing it (with bundle_sha256) rolls every group through an instance refresh."
  type        = string
  default     = null

  validation {
    condition     = var.bundle_s3_uri == null || can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9!_.*()/-]+\\.tar\\.zst$", var.bundle_s3_uri))
    error_message = "bundle_s3_uri must look like s3://BUCKET/path/brs-0.1.0-linux-x86_64-cpu.tar.zst (no spaces or quotes)."
  }

  validation {
    condition     = var.bundle_s3_uri != null || var.ami_id != null
    error_message = "Set bundle_s3_uri (the default Amazon Linux 2023 AMI has no brs on it), or ami_id for an AMI with brs installed."
  }
}

variable "bundle_sha256" {
  description = "SHA-256 of the bundle at bundle_s3_uri (the .sha256 file scripts/package writes). User data refuses a bundle whose hash differs."
  type        = string
  default     = null

  validation {
    condition     = var.bundle_sha256 == null || can(regex("^[0-9a-f]{64}$", var.bundle_sha256))
    error_message = "bundle_sha256 must be 64 lower-case hex digits."
  }

  validation {
    condition     = (var.bundle_s3_uri == null) == (var.bundle_sha256 == null)
    error_message = "bundle_s3_uri and bundle_sha256 go together."
  }
}

variable "install_dir" {
  description = "Where brs lives on the instances: user data unpacks the bundle into install_dir/releases/SHA256 and points install_dir/current at it; with a custom AMI and no bundle, brs must already be at install_dir/current (bin/, lib/, share/)."
  type        = string
  default     = "/opt/brs"

  validation {
    condition     = can(regex("^/[A-Za-z0-9._/-]+$", var.install_dir)) && !endswith(var.install_dir, "/")
    error_message = "install_dir must be an absolute path without spaces, shell metacharacters or a trailing slash."
  }
}

variable "instance_refresh_min_healthy_percentage" {
  description = "Instance refresh (a new bundle, AMI or config): the share of each group's capacity that stays in service. With max_healthy above 100 new instances launch before old ones leave, so 100 keeps full capacity."
  type        = number
  default     = 100

  validation {
    condition     = var.instance_refresh_min_healthy_percentage >= 0 && var.instance_refresh_min_healthy_percentage <= 100
    error_message = "instance_refresh_min_healthy_percentage must be from 0 to 100."
  }
}

variable "instance_refresh_max_healthy_percentage" {
  description = "Instance refresh: the most capacity, in percent, a group may run while replacing (100 to 200); above 100 replacements launch before the instances they replace terminate."
  type        = number
  default     = 200

  validation {
    condition     = var.instance_refresh_max_healthy_percentage >= 100 && var.instance_refresh_max_healthy_percentage <= 200 && var.instance_refresh_max_healthy_percentage - var.instance_refresh_min_healthy_percentage <= 100
    error_message = "instance_refresh_max_healthy_percentage must be from 100 to 200 and at most 100 above the minimum."
  }
}

variable "instance_type" {
  description = "Instance type of the serving tier. brs-serve is CPU-bound (one generator forward is ~105 GFLOP at 256 px); compute-optimised types give the best price per image."
  type        = string
  default     = "c7i.xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like c7i.xlarge."
  }
}

variable "root_volume_size_gb" {
  description = "Size of the encrypted gp3 root volume of serving instances (binary, libtorch, logs; models live on EFS)."
  type        = number
  default     = 20

  validation {
    condition     = var.root_volume_size_gb >= 8 && var.root_volume_size_gb <= 1024
    error_message = "root_volume_size_gb must be from 8 to 1024."
  }
}

variable "root_device_name" {
  description = "Root device name of the AMI (/dev/xvda on Amazon Linux, /dev/sda1 on Ubuntu)."
  type        = string
  default     = "/dev/xvda"

  validation {
    condition     = can(regex("^/dev/(xvd|sd|nvme)[a-z0-9]+$", var.root_device_name))
    error_message = "root_device_name must be a device path such as /dev/xvda."
  }
}

variable "serve_port" {
  description = "Port brs-serve listens on; the target group and the health check (GET /readyz) use it."
  type        = number
  default     = 8080

  validation {
    condition     = var.serve_port >= 1024 && var.serve_port <= 65535 && floor(var.serve_port) == var.serve_port
    error_message = "serve_port must be an unprivileged port (1024-65535): brs-serve runs as a non-root user."
  }
}

variable "styles" {
  description = "Styles brs-serve serves ([styles.NAME] in serve.toml): name -> run directory under /mnt/brs/models on EFS, where brs-train writes checkpoints and brs-serve follows the latest pointer."
  type        = map(string)
  default     = { default = "default" }

  validation {
    condition     = length(var.styles) > 0 && alltrue([for k in keys(var.styles) : can(regex("^[A-Za-z0-9_-]{1,64}$", k))])
    error_message = "styles needs at least one entry; names are 1-64 letters, digits, '_' or '-'."
  }

  validation {
    condition     = alltrue([for v in values(var.styles) : can(regex("^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$", v)) && !strcontains(v, "..")])
    error_message = "styles paths are relative to /mnt/brs/models, without '..', spaces or quotes (e.g. \"anime\" or \"runs/anime\")."
  }
}

variable "default_style" {
  description = "Style used when a request names none (and the one the Lambda variant serves). Null: the only style, or the one named \"default\"."
  type        = string
  default     = null

  validation {
    condition     = var.default_style == null || contains(keys(var.styles), coalesce(var.default_style, "-"))
    error_message = "default_style must be one of the keys of styles."
  }

  validation {
    condition     = var.default_style != null || length(var.styles) == 1 || contains(keys(var.styles), "default")
    error_message = "With several styles and none named \"default\", set default_style."
  }
}

variable "serve_config_extra" {
  description = "Extra TOML for /etc/brs/serve.toml: brs-serve's other top-level keys (max_batch, queue_depth, request_timeout = \"30s\", ...; durations carry units) and tables such as [detector], [auth], [http], [clients] or [models] (docs/serving.md; brs-serve --print-config lists every key). It goes after the keys terraform writes and before [styles.*], [store], [queue] and [aws]. brs-serve refuses unknown keys, so a typo here stops it at boot."
  type        = string
  default     = ""

  validation {
    # Tables as headers ([store], [styles.x]) or as dotted keys (store.kind = ...), bare or quoted.
    condition     = !can(regex("(?m)^\\s*\\[\\s*\"?(aws|styles|store|queue)\"?\\s*[].]", var.serve_config_extra)) && !can(regex("(?m)^\\s*\"?(aws|styles|store|queue)\"?\\s*\\.", var.serve_config_extra)) && !can(regex("(?m)^\\s*\"?(bind|drain_timeout|default_style|secret_file|trusted_proxies)\"?\\s*=", var.serve_config_extra))
    error_message = "serve_config_extra must not set what terraform writes: bind, drain_timeout, default_style, secret_file, trusted_proxies, [styles.*], [store], [queue] or [aws] (use serve_port, styles, default_style, drain_timeout_secs, store_mode and the queue_* variables)."
  }

  validation {
    condition     = !can(regex("(?m)^EOF_BRS_SERVE_TOML$", var.serve_config_extra))
    error_message = "serve_config_extra must not contain the heredoc marker line EOF_BRS_SERVE_TOML."
  }
}

variable "brs_uid" {
  description = "POSIX uid (and gid) that brs-serve, brs-train and the Lambda use on EFS; the access point forces it, so files written by any of them are readable by all."
  type        = number
  default     = 5000

  validation {
    condition     = var.brs_uid >= 1000 && var.brs_uid <= 60000 && floor(var.brs_uid) == var.brs_uid
    error_message = "brs_uid must be a whole number from 1000 to 60000 (outside system ranges)."
  }
}

variable "min_size" {
  description = "Minimum number of serving instances."
  type        = number
  default     = 2

  validation {
    condition     = var.min_size >= 0 && floor(var.min_size) == var.min_size
    error_message = "min_size must be a whole number >= 0."
  }
}

variable "max_size" {
  description = "Maximum number of serving instances."
  type        = number
  default     = 6

  validation {
    condition     = var.max_size >= 1 && var.max_size >= var.min_size && floor(var.max_size) == var.max_size
    error_message = "max_size must be a whole number >= 1 and >= min_size."
  }
}

variable "desired_capacity" {
  description = "Initial number of instances (null = min_size). Terraform ignores later changes: target tracking owns it."
  type        = number
  default     = null

  validation {
    condition     = var.desired_capacity == null || (try(var.desired_capacity >= var.min_size && var.desired_capacity <= var.max_size, false))
    error_message = "desired_capacity must lie between min_size and max_size."
  }
}

variable "scaling_metric" {
  description = "Predefined target-tracking metric: ALBRequestCountPerTarget (requests per instance per minute) or ASGAverageCPUUtilization (percent)."
  type        = string
  default     = "ALBRequestCountPerTarget"

  validation {
    condition     = contains(["ALBRequestCountPerTarget", "ASGAverageCPUUtilization"], var.scaling_metric)
    error_message = "scaling_metric must be ALBRequestCountPerTarget or ASGAverageCPUUtilization."
  }
}

variable "scaling_target" {
  description = "Target value of scaling_metric. For ALBRequestCountPerTarget: requests per instance per minute; set it to ~70% of the saturated throughput measured by locust/run times 60 (see docs/cost.md)."
  type        = number
  default     = 60

  validation {
    condition     = var.scaling_target > 0
    error_message = "scaling_target must be positive."
  }

  validation {
    condition     = var.scaling_metric != "ASGAverageCPUUtilization" || var.scaling_target <= 100
    error_message = "With ASGAverageCPUUtilization, scaling_target is a percentage (at most 100)."
  }
}

variable "warmup_secs" {
  description = "Seconds from launch until a new instance is ready (boot, EFS mount, model load and warm-up). Used as health-check grace period and instance warm-up, so new instances are neither killed nor counted too early."
  type        = number
  default     = 300

  validation {
    condition     = var.warmup_secs >= 30 && var.warmup_secs <= 3600
    error_message = "warmup_secs must be from 30 to 3600."
  }
}

variable "drain_timeout_secs" {
  description = "How long a leaving instance may take to finish in-flight and queued work. It is the target group's deregistration delay and, in serve.toml, drain_timeout (written \"<N>s\") and [aws] drain_timeout_secs."
  type        = number
  default     = 120

  validation {
    condition     = var.drain_timeout_secs >= 0 && var.drain_timeout_secs <= 3600 && floor(var.drain_timeout_secs) == var.drain_timeout_secs
    error_message = "drain_timeout_secs must be a whole number from 0 to 3600 (the target group limit)."
  }
}

variable "lifecycle_heartbeat_timeout_secs" {
  description = "Heartbeat timeout of the termination lifecycle hook. It is [aws] heartbeat_timeout_secs in serve.toml: brs-serve sends RecordLifecycleActionHeartbeat every third of it while a drain takes longer; if it never completes the action, the instance terminates (CONTINUE) this long after the last heartbeat."
  type        = number
  default     = 300

  validation {
    condition     = var.lifecycle_heartbeat_timeout_secs >= 30 && var.lifecycle_heartbeat_timeout_secs <= 7200 && floor(var.lifecycle_heartbeat_timeout_secs) == var.lifecycle_heartbeat_timeout_secs
    error_message = "lifecycle_heartbeat_timeout_secs must be a whole number from 30 to 7200 (the Auto Scaling limits); brs-aws heartbeats every third of it."
  }
}

variable "enable_ssm_session_manager" {
  description = "Attach the AWS managed policy AmazonSSMManagedInstanceCore to the instance roles (serve, worker, training), for Session Manager shells without SSH keys or open ports. It grants the SSM agent's actions on any resource (ssm:UpdateInstanceInformation, ssm:ListInstanceAssociations, ssm:GetParameter(s) on every parameter of the account, ssmmessages:*, ec2messages:* and more), and anyone allowed ssm:StartSession on the instances gets a root shell; off unless you need it."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------------
# EFS
# ---------------------------------------------------------------------------------------------------

variable "efs_throughput_mode" {
  description = "EFS throughput mode. elastic suits bursty checkpoint loads by many instances at once."
  type        = string
  default     = "elastic"

  validation {
    condition     = contains(["elastic", "bursting"], var.efs_throughput_mode)
    error_message = "efs_throughput_mode must be elastic or bursting (provisioned needs a rate this module does not take)."
  }
}

variable "efs_transition_to_ia" {
  description = "Move files not read for this long to EFS Infrequent Access (old results, old checkpoints). Null keeps everything in Standard."
  type        = string
  default     = "AFTER_30_DAYS"

  validation {
    condition     = var.efs_transition_to_ia == null || contains(["AFTER_1_DAY", "AFTER_7_DAYS", "AFTER_14_DAYS", "AFTER_30_DAYS", "AFTER_60_DAYS", "AFTER_90_DAYS", "AFTER_180_DAYS", "AFTER_270_DAYS", "AFTER_365_DAYS"], var.efs_transition_to_ia)
    error_message = "efs_transition_to_ia must be null or one of AFTER_1_DAY, AFTER_7_DAYS, ... AFTER_365_DAYS."
  }
}

# ---------------------------------------------------------------------------------------------------
# Lambda variant
# ---------------------------------------------------------------------------------------------------

variable "enable_lambda" {
  description = "Deploy the Lambda variant (the same router through lambda_http) behind a function URL."
  type        = bool
  default     = false
}

variable "lambda_image_uri" {
  description = "ECR image of the Lambda variant (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG or @sha256:DIGEST). Built by deploy/lambda/Dockerfile from the cpu or the onnx bundle (the onnx one is smaller and runs ONNX Runtime in float32: docs/aws.md). Required with enable_lambda."
  type        = string
  default     = null

  validation {
    condition     = var.lambda_image_uri == null || can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?/[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[0-9a-f]{64})$", var.lambda_image_uri))
    error_message = "lambda_image_uri must be an ECR image URI with a tag or digest."
  }

  validation {
    condition     = !var.enable_lambda || var.lambda_image_uri != null
    error_message = "enable_lambda needs lambda_image_uri."
  }
}

variable "lambda_engine" {
  description = "BRS_ENGINE of the Lambda functions: null or \"auto\" times libtorch and ONNX Runtime at every cold start and keeps the faster (2.4 to 4.6 s more per cold start, docs/benchmarks.md); \"torch\" or \"onnx\" names the engine auto chose on that instance type. The onnx image runs ONNX Runtime whatever this says, except \"torch\", which it refuses."
  type        = string
  default     = null

  validation {
    condition     = var.lambda_engine == null || contains(["auto", "torch", "onnx"], coalesce(var.lambda_engine, "auto"))
    error_message = "lambda_engine must be auto, torch or onnx."
  }
}

variable "lambda_memory_mb" {
  description = "Lambda memory; CPU grows with it (one vCPU per 1,769 MB, 6 at 10,240). The generator needs ~1.5 GB of activations at 256 px plus the weights."
  type        = number
  default     = 4096

  validation {
    condition     = var.lambda_memory_mb >= 128 && var.lambda_memory_mb <= 10240 && floor(var.lambda_memory_mb) == var.lambda_memory_mb
    error_message = "lambda_memory_mb must be a whole number from 128 to 10240."
  }
}

variable "lambda_timeout_secs" {
  description = "Lambda timeout. A cold start loads the model from EFS before the first image."
  type        = number
  default     = 60

  validation {
    condition     = var.lambda_timeout_secs >= 1 && var.lambda_timeout_secs <= 900
    error_message = "lambda_timeout_secs must be from 1 to 900."
  }
}

variable "lambda_architecture" {
  description = "Instruction set of the Lambda image."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "lambda_reserved_concurrency" {
  description = "Concurrency reserved for (and capping) the HTTP function; -1 leaves it unreserved. A cap bounds the bill under a flood; required (>= 1) with lambda_url_auth_type = \"NONE\"."
  type        = number
  default     = -1

  validation {
    condition     = var.lambda_reserved_concurrency >= -1 && floor(var.lambda_reserved_concurrency) == var.lambda_reserved_concurrency
    error_message = "lambda_reserved_concurrency must be -1 or a whole number >= 0."
  }
}

variable "lambda_url_auth_type" {
  description = "Function URL authorization: AWS_IAM (callers sign requests with SigV4) or NONE (public; needs lambda_reserved_concurrency)."
  type        = string
  default     = "AWS_IAM"

  validation {
    condition     = contains(["AWS_IAM", "NONE"], var.lambda_url_auth_type)
    error_message = "lambda_url_auth_type must be AWS_IAM or NONE."
  }

  # A public URL lets anyone start invocations: without a cap a flood scales the function (and the
  # bill) up to the account's whole concurrency, starving every other function in it.
  validation {
    condition     = !var.enable_lambda || var.lambda_url_auth_type != "NONE" || var.lambda_reserved_concurrency >= 1
    error_message = "lambda_url_auth_type = \"NONE\" (a public function URL) needs lambda_reserved_concurrency >= 1 to cap what a flood can cost."
  }
}

variable "log_retention_days" {
  description = "Retention of the Lambda log group."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

# ---------------------------------------------------------------------------------------------------
# Optional training instance
# ---------------------------------------------------------------------------------------------------

variable "enable_training" {
  description = "Launch one training instance that runs brs-train as a systemd unit and writes checkpoints to the same EFS, where every brs-serve instance picks them up through the latest pointer."
  type        = bool
  default     = false

  validation {
    condition     = !(var.enable_training && var.training_bundle_s3_uri == null && try(endswith(var.bundle_s3_uri, "-onnx.tar.zst"), false))
    error_message = "The onnx bundle in bundle_s3_uri has brs-serve and brs-lambda only, no brs-train: with enable_training, set training_bundle_s3_uri to a cpu or cuda bundle."
  }
}

variable "training_ami_id" {
  description = "AMI of the training instance. Null uses ami_id, else the latest Amazon Linux 2023 (CPU training). For GPU training give an AMI with the NVIDIA driver and the cuda bundle (training_bundle_s3_uri)."
  type        = string
  default     = null

  validation {
    condition     = var.training_ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.training_ami_id))
    error_message = "training_ami_id must look like ami-0123456789abcdef0."
  }
}

variable "training_bundle_s3_uri" {
  description = "Bundle for the training instance (e.g. the cuda flavour on a GPU AMI). Null uses bundle_s3_uri."
  type        = string
  default     = null

  validation {
    condition     = var.training_bundle_s3_uri == null || can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9!_.*()/-]+\\.tar\\.zst$", var.training_bundle_s3_uri))
    error_message = "training_bundle_s3_uri must look like s3://BUCKET/path/brs-0.1.0-linux-x86_64-cuda.tar.zst."
  }

  validation {
    condition     = !try(endswith(var.training_bundle_s3_uri, "-onnx.tar.zst"), false)
    error_message = "training_bundle_s3_uri names an onnx bundle, which has no brs-train: give a cpu or cuda bundle."
  }

  validation {
    condition     = (var.training_bundle_s3_uri == null) == (var.training_bundle_sha256 == null)
    error_message = "training_bundle_s3_uri and training_bundle_sha256 go together."
  }
}

variable "training_bundle_sha256" {
  description = "SHA-256 of training_bundle_s3_uri."
  type        = string
  default     = null

  validation {
    condition     = var.training_bundle_sha256 == null || can(regex("^[0-9a-f]{64}$", var.training_bundle_sha256))
    error_message = "training_bundle_sha256 must be 64 lower-case hex digits."
  }
}

variable "training_instance_type" {
  description = "Instance type of the training instance."
  type        = string
  default     = "g5.xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.training_instance_type))
    error_message = "training_instance_type must look like g5.xlarge."
  }
}

variable "training_root_volume_size_gb" {
  description = "Encrypted root volume of the training instance (CUDA libraries, dataset cache)."
  type        = number
  default     = 100

  validation {
    condition     = var.training_root_volume_size_gb >= 20 && var.training_root_volume_size_gb <= 4096
    error_message = "training_root_volume_size_gb must be from 20 to 4096."
  }
}

variable "training_command" {
  description = "Command line the training unit runs as the brs user, e.g. /opt/brs/current/bin/brs-train train --config /mnt/brs/data/train.toml --data /mnt/brs/data/set --out /mnt/brs/models/STYLE --resume. Keep --resume: the unit restarts after a crash or a stop and must continue from the latest checkpoint in --out (on an empty directory it starts fresh). Write checkpoints under /mnt/brs/models/STYLE so brs-serve finds them. Required with enable_training."
  type        = string
  default     = null

  validation {
    condition     = var.training_command == null || can(regex("^/[^\\n]+$", var.training_command))
    error_message = "training_command must be one line starting with an absolute path."
  }

  validation {
    condition     = !var.enable_training || var.training_command != null
    error_message = "enable_training needs training_command."
  }
}

# ---------------------------------------------------------------------------------------------------
# Jobs: where inputs, results and job state live, and how job items are queued (serve.toml [store],
# [queue]); the worker group that drains the queue
# ---------------------------------------------------------------------------------------------------

variable "store_mode" {
  description = "s3_sqs (production default): inputs, results and job state in an S3 bucket, one SQS message per job image, any instance or worker finishes any job, a dead worker's items reappear after the visibility timeout, poison items go to a dead-letter queue. efs_local: results on EFS and an in-process queue per instance (today's single-box behaviour; a job dies with the instance that took it)."
  type        = string
  default     = "s3_sqs"

  validation {
    condition     = contains(["s3_sqs", "efs_local"], var.store_mode)
    error_message = "store_mode must be s3_sqs or efs_local."
  }
}

variable "inputs_expire_days" {
  description = "S3 lifecycle: uploaded job images (inputs/) are deleted this many days after upload (store-namespaces.json names this variable as the expiry of inputs/)."
  type        = number
  default     = 7

  validation {
    condition     = var.inputs_expire_days >= 1 && floor(var.inputs_expire_days) == var.inputs_expire_days
    error_message = "inputs_expire_days must be a whole number >= 1."
  }
}

variable "results_expire_days" {
  description = "S3 lifecycle: translated images (results/) and job state (jobs/) are deleted this many days after they were written (store-namespaces.json names this variable for both; dedup/ and health/ expire after a day)."
  type        = number
  default     = 30

  validation {
    condition     = var.results_expire_days >= 1 && floor(var.results_expire_days) == var.results_expire_days
    error_message = "results_expire_days must be a whole number >= 1."
  }
}

variable "s3_force_destroy" {
  description = "Let terraform destroy delete the jobs bucket with its objects (tests; keep false in production)."
  type        = bool
  default     = false
}

variable "queue_visibility_timeout_secs" {
  description = "SQS visibility timeout: how long a received job item stays hidden from other workers (brs-serve extends it while an item takes long; [queue] visibility_timeout, written \"<N>s\"). Also the worker Lambda's upper bound on its timeout."
  type        = number
  default     = 120

  validation {
    condition     = var.queue_visibility_timeout_secs >= 10 && var.queue_visibility_timeout_secs <= 43200 && floor(var.queue_visibility_timeout_secs) == var.queue_visibility_timeout_secs
    error_message = "queue_visibility_timeout_secs must be a whole number from 10 to 43200 (the SQS limit)."
  }
}

variable "queue_wait_time_secs" {
  description = "SQS long-polling wait of brs-serve's receives ([queue] wait_time, written \"<N>s\") and the queue's default."
  type        = number
  default     = 20

  validation {
    condition     = var.queue_wait_time_secs >= 0 && var.queue_wait_time_secs <= 20 && floor(var.queue_wait_time_secs) == var.queue_wait_time_secs
    error_message = "queue_wait_time_secs must be a whole number from 0 to 20."
  }
}

variable "queue_batch_size" {
  description = "Messages per receive for brs-serve ([queue] batch_size) and per invocation for the worker Lambda."
  type        = number
  default     = 4

  validation {
    condition     = var.queue_batch_size >= 1 && var.queue_batch_size <= 10 && floor(var.queue_batch_size) == var.queue_batch_size
    error_message = "queue_batch_size must be a whole number from 1 to 10."
  }
}

variable "max_receives" {
  description = "A job item received this many times without finishing moves to the dead-letter queue and is marked failed: the redrive policy's maxReceiveCount and [queue] max_receives in serve.toml (the same number by construction)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receives >= 1 && var.max_receives <= 1000 && floor(var.max_receives) == var.max_receives
    error_message = "max_receives must be a whole number from 1 to 1000."
  }
}

variable "dlq_retention_days" {
  description = "How long dead-lettered job items stay in the DLQ for inspection or redrive."
  type        = number
  default     = 14

  validation {
    condition     = var.dlq_retention_days >= 1 && var.dlq_retention_days <= 14 && floor(var.dlq_retention_days) == var.dlq_retention_days
    error_message = "dlq_retention_days must be a whole number from 1 to 14 (the SQS limit)."
  }
}

variable "enable_workers" {
  description = "With store_mode s3_sqs: a second Auto Scaling group running `brs-serve worker` (no HTTP listener) that scales on queue backlog per instance, down to worker_min_size (0 by default)."
  type        = bool
  default     = true
}

variable "worker_instance_type" {
  description = "Instance type of the queue workers."
  type        = string
  default     = "c7i.xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.worker_instance_type))
    error_message = "worker_instance_type must look like c7i.xlarge."
  }
}

variable "worker_min_size" {
  description = "Minimum number of queue workers (0: none while the queue is empty)."
  type        = number
  default     = 0

  validation {
    condition     = var.worker_min_size >= 0 && floor(var.worker_min_size) == var.worker_min_size
    error_message = "worker_min_size must be a whole number >= 0."
  }
}

variable "worker_max_size" {
  description = "Maximum number of queue workers."
  type        = number
  default     = 8

  validation {
    condition     = var.worker_max_size >= 1 && var.worker_max_size >= var.worker_min_size && floor(var.worker_max_size) == var.worker_max_size
    error_message = "worker_max_size must be a whole number >= 1 and >= worker_min_size."
  }
}

variable "worker_backlog_target" {
  description = "Target backlog per worker instance (visible messages / in-service workers) for target tracking: the latency you accept for an item divided by the seconds one instance takes per item. 60 s acceptable at ~1 s per image on 4 vCPUs gives 60."
  type        = number
  default     = 60

  validation {
    condition     = var.worker_backlog_target > 0
    error_message = "worker_backlog_target must be positive."
  }
}

variable "worker_ops_port" {
  description = "Port of the queue workers' operations endpoint ([worker] ops_bind = \"0.0.0.0:PORT\" in their serve.toml): GET /healthz, /readyz and /metrics, for a Prometheus scraper or an operator inside the VPC. The worker security group admits it from the VPC's CIDR only; nothing else listens on a worker. Null turns it off."
  type        = number
  default     = 9091

  validation {
    # A conditional, not ||: terraform evaluates both sides of || and a null cannot be compared.
    condition     = var.worker_ops_port == null ? true : (var.worker_ops_port >= 1024 && var.worker_ops_port <= 65535 && floor(var.worker_ops_port) == var.worker_ops_port)
    error_message = "worker_ops_port must be an unprivileged port (1024-65535): brs-serve runs as a non-root user; null turns the endpoint off."
  }
}

# ---------------------------------------------------------------------------------------------------
# Abuse control at the edge
# ---------------------------------------------------------------------------------------------------

variable "enable_waf" {
  description = "Attach an AWS WAF web ACL to the load balancer: a rate-based rule per client IP (waf_rate_limit) and AWS's known-bad-inputs rule group. brs-serve's own per-client limits still apply behind it."
  type        = bool
  default     = true
}

variable "waf_rate_limit" {
  description = "Requests one client IP may send in waf_rate_window_secs before WAF blocks it (403) until its rate drops."
  type        = number
  default     = 1000

  validation {
    condition     = var.waf_rate_limit >= 10 && var.waf_rate_limit <= 2000000000 && floor(var.waf_rate_limit) == var.waf_rate_limit
    error_message = "waf_rate_limit must be a whole number from 10 to 2,000,000,000 (the WAF limits)."
  }
}

variable "waf_rate_window_secs" {
  description = "Evaluation window of the rate-based rule."
  type        = number
  default     = 300

  validation {
    condition     = contains([60, 120, 300, 600], var.waf_rate_window_secs)
    error_message = "waf_rate_window_secs must be 60, 120, 300 or 600."
  }
}

# ---------------------------------------------------------------------------------------------------
# The Lambda variant as a queue worker
# ---------------------------------------------------------------------------------------------------

variable "enable_lambda_worker" {
  description = "With store_mode s3_sqs: a second function from lambda_image_uri with BRS_LAMBDA_MODE=sqs, fed by an SQS event source mapping with partial batch failures, so the queue drains with no instance at all."
  type        = bool
  default     = false

  validation {
    condition     = !var.enable_lambda_worker || var.lambda_image_uri != null
    error_message = "enable_lambda_worker needs lambda_image_uri."
  }
}

variable "lambda_worker_max_concurrency" {
  description = "Most concurrent worker Lambda invocations the event source mapping starts (2 to 1000): caps the bill and the load on EFS."
  type        = number
  default     = 10

  validation {
    condition     = var.lambda_worker_max_concurrency >= 2 && var.lambda_worker_max_concurrency <= 1000 && floor(var.lambda_worker_max_concurrency) == var.lambda_worker_max_concurrency
    error_message = "lambda_worker_max_concurrency must be a whole number from 2 to 1000."
  }
}

variable "secret_recovery_window_days" {
  description = "Days a deleted deployment secret can still be restored (0 deletes it at once: tests only)."
  type        = number
  default     = 30

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or from 7 to 30."
  }
}
