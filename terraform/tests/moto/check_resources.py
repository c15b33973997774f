"""Checks, through the AWS APIs of a moto server, what `terraform apply` of tests/moto created.

Run by scripts/checks/terraform between apply and destroy (and with --expect-gone after destroy).
It asserts the properties the deployment depends on, not merely that resources exist: the termination
hooks, IMDSv2, encryption, the user data (bash -n and shellcheck, the bundle verified by hash, EFS models
mounted read-only), the serve.toml it writes (parsed as TOML; [store], [queue] and [aws] exact), the
jobs bucket (lifecycle and S3 grants per namespace of store-namespaces.json, objects fenced to the brs
roles) and queue, the workers' metric-math scaling and operations port (on in their serve.toml,
open to the VPC's CIDR only), /metrics refused at the load balancer, the S3 gateway endpoint, WAF,
the secret kept out of state, and least-privilege IAM.
"""

import argparse
import base64
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import boto3

REGION = "us-east-1"
VPC_CIDR = "10.40.0.0/16"
AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
BUNDLE_URI = "s3://brs-moto-releases/v0.1.0/brs-0.1.0-linux-x86_64-cpu.tar.zst"
BUNDLE_ARN = "arn:aws:s3:::brs-moto-releases/v0.1.0/brs-0.1.0-linux-x86_64-cpu.tar.zst"
MAX_RECEIVES = 4
# The bucket's namespaces: the one table iam.tf, s3.tf and brs-serve share.
NAMESPACES = json.loads((pathlib.Path(__file__).resolve().parents[2] / "store-namespaces.json").read_text())["namespaces"]
# The variables expire_days may name, at the test root's (default) values.
EXPIRE_DAYS = {"inputs_expire_days": 7, "results_expire_days": 30}
# Which process kinds' grants each role holds (iam.tf: an HTTP instance also consumes the queue).
ROLE_KINDS = {"serve": ("api", "worker"), "worker": ("worker",), "lambda-api": ("api",), "lambda-worker": ("worker",)}
S3_VERBS = {"get": "s3:GetObject", "put": "s3:PutObject", "delete": "s3:DeleteObject"}
# The [aws] keys terraform writes (brs-aws's AwsConfig, docs/aws.md; the rest keep its defaults).
AWS_KEYS = {"region", "asg_name", "lifecycle_hook", "drain_timeout_secs", "heartbeat_timeout_secs"}
# brs-serve's top-level config keys (docs/serving.md, `brs-serve --print-config`): it refuses any
# other, so a key outside this set would stop every instance at boot. scripts/checks/terraform also
# runs the real parser on the rendered file when a brs-serve binary is built.
SERVE_KEYS = {
    "bind", "device", "precision", "max_batch", "max_wait", "queue_depth", "job_queue_share", "request_timeout",
    "max_upload_bytes", "max_pixels", "max_side", "max_output_size", "max_job_images", "decode_concurrency",
    "results_max_age", "results_max_bytes", "reload_poll", "reload_jitter", "drain_grace", "drain_timeout",
    "default_style", "secret_file", "trusted_proxies", "styles", "detector", "crop", "http", "clients", "auth",
    "models", "store", "queue", "worker", "aws",
}
# The workers' operations port (variable worker_ops_port, at its default in the test root).
WORKER_OPS_PORT = 9091
# The [queue] keys terraform writes with s3_sqs (brs-serve also accepts endpoint and consume).
QUEUE_KEYS = {"kind", "url", "region", "visibility_timeout", "wait_time", "batch_size", "max_receives"}
# humantime's units, as brs-serve reads durations ("120s", "2m", "30days", "1h 30m").
DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600,
    "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400,
}
WEB_SQS = {"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}
WORKER_SQS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}
LIFECYCLE = {"autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat", "autoscaling:SetInstanceProtection"}
failures: list[str] = []


def check(cond: bool, what: str) -> None:
    print(("  ok    " if cond else "  FAIL  ") + what)
    if not cond:
        failures.append(what)


def client(endpoint: str, service: str):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def statements(doc) -> list[dict]:
    if isinstance(doc, str):
        doc = json.loads(doc)
    return as_list(doc["Statement"])


def actions_of(s: dict) -> set[str]:
    return set(as_list(s.get("Action", [])))


def resources_of(s: dict) -> set[str]:
    return set(as_list(s.get("Resource", [])))


def seconds(value) -> float | None:
    """A brs-serve duration string in seconds, or None when it is not one (a bare number is not)."""
    if not isinstance(value, str):
        return None
    parts = re.findall(r"(\d+)\s*([a-z]+)", value)
    if not parts or re.sub(r"\s", "", value) != "".join(n + u for n, u in parts) or any(u not in DURATION_UNITS for _, u in parts):
        return None
    return sum(int(n) * DURATION_UNITS[u] for n, u in parts)


def serve_toml_from_user_data(user_data: str) -> str:
    m = re.search(r"<<'EOF_BRS_SERVE_TOML'\n(.*?)\nEOF_BRS_SERVE_TOML\n", user_data, re.S)
    return m.group(1) if m else ""


def shell_clean(user_data: str, what: str) -> None:
    """bash -n and shellcheck: the script cloud-init will run must at least parse and lint clean."""
    syntax = subprocess.run(["bash", "-n"], input=user_data, text=True, capture_output=True)
    check(syntax.returncode == 0, f"{what}: user data is valid bash {syntax.stderr.strip()}")
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", "-s", "bash", "-"], input=user_data, text=True, capture_output=True)
        check(lint.returncode == 0, f"{what}: user data is shellcheck-clean {lint.stdout.strip()[:2000]}")
    else:
        check(False, f"{what}: shellcheck is not installed (scripts/setup installs it)")


def fstab_mounts(user_data: str) -> dict[str, dict]:
    """Mount path -> {fs, options} from the fstab lines the user data appends."""
    out = {}
    for fs, path, opts in re.findall(r'echo "(fs-[0-9a-z]+):/ (\S+) efs (\S+) 0 0"', user_data):
        out[path] = {"fs": fs, "options": opts.split(",")}
    return out


def planned(plan: dict, address: str) -> dict:
    """Planned attribute values of one resource in `terraform show -json PLANFILE` output."""
    def walk(module: dict):
        yield from module.get("resources", [])
        for child in module.get("child_modules", []):
            yield from walk(child)

    for r in walk(plan.get("planned_values", {}).get("root_module", {})):
        if r["address"] == address:
            return r["values"]
    return {}


def role_policy(iam, role: str) -> list[dict]:
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    return [s for n in names for s in statements(iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"])]


def by_sid(stmts: list[dict]) -> dict[str, dict]:
    return {s.get("Sid", ""): s for s in stmts}


def store_grants(role: str) -> dict[str, set[str]]:
    """Verb -> the prefixes store-namespaces.json lets this role use it on (union of its kinds)."""
    return {verb: {ns["prefix"] for ns in NAMESPACES for kind in ROLE_KINDS[role] if verb in ns[kind]} for verb in S3_VERBS}


def check_store_grants(role: str, st: dict[str, dict]) -> None:
    """The role's S3 statements are exactly what store-namespaces.json says, listing included."""
    want = store_grants(role)
    for verb, action in S3_VERBS.items():
        sid = f"Jobs{verb.title()}"
        got = {r.split(":::", 1)[1].split("/", 1)[1] for r in resources_of(st.get(sid, {}))}
        check(got == {p + "*" for p in want[verb]} and (not want[verb] or actions_of(st[sid]) == {action}),
              f"{role}: {action} on exactly {sorted(want[verb])} ({sorted(got)})")
    listing = st.get("JobsList", {})
    cond = listing.get("Condition", {}).get("StringLikeIfExists", {}).get("s3:prefix", [])
    check(actions_of(listing) == {"s3:ListBucket"} and set(as_list(cond)) == {p + "*" for p in want["get"]},
          f"{role}: s3:ListBucket only for the prefixes it reads (404 for a missing key) ({listing})")
    prefixes = "|".join(re.escape(ns["prefix"]) for ns in NAMESPACES)
    wildcard = re.compile(rf"arn:aws:s3:::[^/*]+/({prefixes})\*")
    own_log_streams = f"arn:aws:logs:{REGION}:123456789012:log-group:/aws/lambda/brs-moto-{role}:*"
    check(all("*" not in r or wildcard.fullmatch(r) or r == own_log_streams for sid, s in st.items() if sid != "VpcEnis" for r in resources_of(s)),
          f"{role}: no wildcard resources except the jobs bucket's namespaces (and a Lambda's own log streams and ENI actions)")


def check_group(out, asg_c, ec2, kind: str, asg_name: str, lt_id: str, al2023: str, serve_out: dict) -> dict:
    """One brs-serve group (serve or worker): group, hook, launch template, user data, serve.toml."""
    groups = asg_c.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])["AutoScalingGroups"]
    check(len(groups) == 1, f"{kind}: Auto Scaling group {asg_name} exists")
    if not groups:
        return {}
    asg = groups[0]
    check(asg.get("LaunchTemplate", {}).get("LaunchTemplateId") == lt_id, f"{kind}: the group uses its launch template")
    metrics = {m["Metric"] for m in asg.get("EnabledMetrics", [])}
    check("GroupInServiceInstances" in metrics, f"{kind}: group metrics include GroupInServiceInstances ({sorted(metrics)})")

    hook = f"brs-moto-{'drain' if kind == 'serve' else 'worker-drain'}"
    hooks = [h for h in asg_c.describe_lifecycle_hooks(AutoScalingGroupName=asg_name)["LifecycleHooks"] if h["LifecycleHookName"] == hook]
    check(len(hooks) == 1 and hooks[0]["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
          and hooks[0]["HeartbeatTimeout"] == 300 and hooks[0]["DefaultResult"] == "CONTINUE",
          f"{kind}: termination hook {hook} (heartbeat 300 s, CONTINUE)")

    versions = ec2.describe_launch_template_versions(LaunchTemplateId=lt_id, Versions=["$Latest"])["LaunchTemplateVersions"]
    check(len(versions) == 1, f"{kind}: launch template has a latest version")
    if not versions:
        return {}
    data = versions[0]["LaunchTemplateData"]
    check(data.get("ImageId") == al2023, f"{kind}: boots the AL2023 AMI from the public SSM parameter ({data.get('ImageId')} vs {al2023})")
    md = data.get("MetadataOptions", {})
    check(md.get("HttpTokens") == "required" and int(md.get("HttpPutResponseHopLimit", 0)) == 1, f"{kind}: IMDSv2 required, hop limit 1")
    ebs = [b.get("Ebs", {}) for b in data.get("BlockDeviceMappings", [])]
    check(bool(ebs) and all(e.get("Encrypted") in (True, "true") for e in ebs), f"{kind}: root volume is encrypted")
    check(data.get("IamInstanceProfile", {}).get("Arn", "").endswith(f"instance-profile/brs-moto-{kind}"), f"{kind}: its own instance profile")

    user_data = base64.b64decode(data.get("UserData", "")).decode()
    shell_clean(user_data, kind)
    check(f"BUNDLE_URI='{BUNDLE_URI}'" in user_data and "BUNDLE_SHA256='0123456789abcdef" in user_data
          and 'sha256sum --check --strict' in user_data, f"{kind}: user data fetches the bundle and checks its SHA-256")
    mounts = fstab_mounts(user_data)
    models = mounts.get("/mnt/brs/models", {})
    check(models.get("fs") == out["efs_id"] and {"tls", "iam", "_netdev", "ro", f"accesspoint={out['efs_access_point_ids']['models']}"} <= set(models.get("options", [])),
          f"{kind}: models mounted read-only through the models access point with tls, iam ({models})")
    check(set(mounts) == {"/mnt/brs/models"}, f"{kind}: with s3_sqs nothing else is mounted ({sorted(mounts)})")
    exec_line = "ExecStart=/opt/brs/current/bin/brs-serve " + ("--config" if kind == "serve" else "worker --config") + " /etc/brs/serve.toml"
    check(exec_line in user_data, f"{kind}: systemd unit runs `{exec_line[10:]}`")
    check("--secret-id 'arn:aws:secretsmanager:" in user_data and "/etc/brs/secret" in user_data, f"{kind}: the deployment secret is read at boot into /etc/brs/secret")

    text = serve_toml_from_user_data(user_data)
    check(text == serve_out, f"{kind}: user data writes exactly the module's serve.toml output")
    try:
        conf = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        check(False, f"{kind}: serve.toml parses as TOML ({e})")
        return {}
    check(set(conf) <= SERVE_KEYS, f"{kind}: serve.toml uses only brs-serve's keys ({sorted(set(conf) - SERVE_KEYS)} unknown)")
    aws = conf.get("aws", {})
    check(set(aws) == AWS_KEYS and aws.get("region") == REGION and aws.get("asg_name") == asg_name and aws.get("lifecycle_hook") == hook
          and aws.get("drain_timeout_secs") == 120 and aws.get("heartbeat_timeout_secs") == 300,
          f"{kind}: [aws] names this region, group and hook, a 120 s drain and the hook's 300 s heartbeat timeout ({aws})")
    check(conf.get("styles") == {"anime": {"path": "/mnt/brs/models/anime"}, "male": {"path": "/mnt/brs/models/runs/male"}},
          f"{kind}: styles are run directories on the read-only models mount")
    check(conf.get("secret_file") == "/etc/brs/secret" and conf.get("trusted_proxies") == [VPC_CIDR], f"{kind}: secret file and the VPC as trusted proxies")
    check(seconds(conf.get("drain_timeout")) == 120, f"{kind}: drain_timeout is 120 s, written with its unit ({conf.get('drain_timeout')!r})")
    check(conf.get("bind") == "0.0.0.0:8080" and conf.get("default_style") == "anime", f"{kind}: bind address and default style")
    check(conf.get("max_batch") == 4 and conf.get("queue_depth") == 16, f"{kind}: serve_config_extra keys are top-level")
    store, queue = conf.get("store", {}), conf.get("queue", {})
    check(store == {"kind": "s3", "bucket": out["jobs_bucket"], "region": REGION}, f"{kind}: [store] is the jobs bucket ({store})")
    check(set(queue) == QUEUE_KEYS and queue.get("kind") == "sqs" and queue.get("url") == out["jobs_queue_url"]
          and seconds(queue.get("visibility_timeout")) == 120 and seconds(queue.get("wait_time")) == 20 and queue.get("batch_size") == 4
          and queue.get("max_receives") == MAX_RECEIVES, f"{kind}: [queue] is the jobs queue with max_receives {MAX_RECEIVES} ({queue})")
    if kind == "worker":
        check(conf.get("worker") == {"ops_bind": f"0.0.0.0:{WORKER_OPS_PORT}"},
              f"worker: [worker] ops_bind turns the operations port on at {WORKER_OPS_PORT} ({conf.get('worker')})")
    else:
        check("worker" not in conf, f"{kind}: no [worker] table (the HTTP tier answers /metrics on bind)")
    return asg


def check_present(endpoint: str, out: dict, plan: dict, refresh_plan: dict | None, state_text: str | None) -> None:
    asg_c, ec2, efs, elbv2, iam = (client(endpoint, s) for s in ("autoscaling", "ec2", "efs", "elbv2", "iam"))
    s3, sqs, ssm, waf, sm, cw = (client(endpoint, s) for s in ("s3", "sqs", "ssm", "wafv2", "secretsmanager", "cloudwatch"))
    al2023 = ssm.get_parameter(Name=AL2023_PARAMETER)["Parameter"]["Value"]
    check(out["ami_id"] == al2023, f"with no ami_id the module picks the latest AL2023 ({out['ami_id']})")

    # --- the HTTP tier ------------------------------------------------------------------------------
    asg = check_group(out, asg_c, ec2, "serve", out["asg_name"], out["launch_template_id"], al2023, out["serve_toml"])
    if asg:
        check((asg["MinSize"], asg["MaxSize"]) == (1, 3), "serve: min/max are the test root's 1/3")
        check(asg.get("HealthCheckType") == "ELB" and out["target_group_arn"] in asg.get("TargetGroupARNs", []), "serve: in the target group, ELB health checks")
    refresh = planned(plan, 'module.brs.aws_autoscaling_group.this["serve"]').get("instance_refresh", [{}])[0]
    prefs = (refresh.get("preferences") or [{}])[0]
    check(refresh.get("strategy") == "Rolling" and prefs.get("min_healthy_percentage") == 100 and prefs.get("max_healthy_percentage") == 200,
          f"instance refresh keeps full capacity: Rolling, min 100 %, max 200 % ({prefs})")
    if refresh_plan is not None:
        # A new bundle must reach the groups: new user data, a new launch template version, and the
        # group moving to it, which is what makes the provider start the instance refresh.
        changes = {r["address"]: r for r in refresh_plan.get("resource_changes", [])}
        for kind in ("serve", "worker"):
            lt = changes.get(f'module.brs.aws_launch_template.this["{kind}"]', {}).get("change", {})
            grp = changes.get(f'module.brs.aws_autoscaling_group.this["{kind}"]', {}).get("change", {})
            check(lt.get("actions") == ["update"] and lt.get("before", {}).get("user_data") != lt.get("after", {}).get("user_data"),
                  f"{kind}: a new bundle_sha256 updates the launch template's user data in place")
            check(grp.get("actions") == ["update"] and "launch_template" in json.dumps(grp.get("after_unknown", {})),
                  f"{kind}: ... and moves the group to the new version (instance refresh)")

    policies = asg_c.describe_policies(AutoScalingGroupName=out["asg_name"])["ScalingPolicies"]
    tt = [p for p in policies if p.get("PolicyType") == "TargetTrackingScaling"]
    check(len(tt) == 1, "serve: one target-tracking policy")
    if tt:
        spec = tt[0]["TargetTrackingConfiguration"]["PredefinedMetricSpecification"]
        check(spec["PredefinedMetricType"] == "ALBRequestCountPerTarget"
              and re.fullmatch(r"app/brs-moto-alb/[^/]+/targetgroup/brs-moto-serve/[^/]+", spec.get("ResourceLabel", "")) is not None
              and tt[0]["TargetTrackingConfiguration"]["TargetValue"] == 60.0, "serve: tracks 60 ALB requests per target per minute")

    tgs = elbv2.describe_target_groups(TargetGroupArns=[out["target_group_arn"]])["TargetGroups"]
    check(len(tgs) == 1 and tgs[0]["HealthCheckPath"] == "/readyz" and tgs[0]["Port"] == 8080, "target group checks /readyz on port 8080")
    attrs = {a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(TargetGroupArn=out["target_group_arn"])["Attributes"]}
    check(attrs.get("deregistration_delay.timeout_seconds") == "120", "deregistration delay equals the drain time (120 s)")
    # Without a certificate the HTTP listener is the one that forwards: /metrics must stop there.
    listeners = elbv2.describe_listeners(LoadBalancerArn=out["alb_arn"])["Listeners"]
    check([li["Port"] for li in listeners] == [80], f"one listener (HTTP :80) without certificate_arn ({[li['Port'] for li in listeners]})")
    for li in listeners:
        rules = elbv2.describe_rules(ListenerArn=li["ListenerArn"])["Rules"]
        metrics_rules = [r for r in rules if any(c.get("Field") == "path-pattern" and "/metrics" in c.get("PathPatternConfig", {}).get("Values", c.get("Values", []))
                                                for c in r.get("Conditions", []))]
        fixed = [a.get("FixedResponseConfig", {}) for r in metrics_rules for a in r.get("Actions", []) if a.get("Type") == "fixed-response"]
        check(len(metrics_rules) == 1 and metrics_rules[0]["Priority"] == "1" and len(fixed) == 1 and fixed[0].get("StatusCode") == "404",
              f"listener :{li['Port']}: /metrics answers 404 at the load balancer, before any forward ({metrics_rules})")

    # --- network: S3 through a gateway endpoint on the private route tables -------------------------
    private_rtbs = {a["RouteTableId"] for rt in ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": out["private_subnet_ids"]}])["RouteTables"]
                    for a in rt.get("Associations", []) if a.get("SubnetId") in out["private_subnet_ids"]}
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [out["vpc_id"]]}])["VpcEndpoints"]
    s3_eps = [e for e in endpoints if e["ServiceName"] == f"com.amazonaws.{REGION}.s3" and e["VpcEndpointType"] == "Gateway"]
    check(len(s3_eps) == 1 and set(s3_eps[0].get("RouteTableIds", [])) == private_rtbs and len(private_rtbs) == 2,
          f"an S3 gateway endpoint serves both private route tables ({[e.get('RouteTableIds') for e in s3_eps]} vs {sorted(private_rtbs)})")

    # --- the queue workers --------------------------------------------------------------------------
    wasg = check_group(out, asg_c, ec2, "worker", out["worker_asg_name"], out["worker_launch_template_id"], al2023, out["worker_serve_toml"])
    if wasg:
        check((wasg["MinSize"], wasg["MaxSize"]) == (0, 8) and not wasg.get("TargetGroupARNs"), "worker: 0 to 8 instances, outside the load balancer")
    queue_name = out["jobs_queue_url"].rsplit("/", 1)[-1]
    wpol = {p["PolicyName"]: p for p in asg_c.describe_policies(AutoScalingGroupName=out["worker_asg_name"])["ScalingPolicies"]}
    backlog = wpol.get("brs-moto-worker-backlog", {}).get("TargetTrackingConfiguration", {})
    metrics = {m["Id"]: m for m in backlog.get("CustomizedMetricSpecification", {}).get("Metrics", [])}
    vis = metrics.get("visible", {}).get("MetricStat", {}).get("Metric", {})
    ins = metrics.get("workers", {}).get("MetricStat", {}).get("Metric", {})
    check(vis.get("MetricName") == "ApproximateNumberOfMessagesVisible" and vis.get("Dimensions") == [{"Name": "QueueName", "Value": queue_name}]
          and ins.get("MetricName") == "GroupInServiceInstances" and ins.get("Dimensions") == [{"Name": "AutoScalingGroupName", "Value": out["worker_asg_name"]}],
          f"worker: metric math reads this queue's visible messages and this group's in-service instances ({sorted(metrics)})")
    check(metrics.get("backlog_per_worker", {}).get("Expression") == "visible / workers" and metrics["backlog_per_worker"].get("ReturnData") is True
          and backlog.get("TargetValue") == 60.0, "worker: target tracking keeps visible / workers at 60")
    alarms = cw.describe_alarms(AlarmNames=["brs-moto-worker-from-zero"])["MetricAlarms"]
    step = wpol.get("brs-moto-worker-from-zero", {})
    check(len(alarms) == 1 and step.get("PolicyARN") in alarms[0].get("AlarmActions", []) and step.get("AdjustmentType") == "ExactCapacity"
          and any(m.get("Expression") == "IF(visible > 0 AND desired == 0, 1, 0)" for m in alarms[0].get("Metrics", [])),
          "worker: an alarm starts the first worker when items wait and the group wants none")

    wsgs = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [out["vpc_id"]]},
                                                 {"Name": "group-name", "Values": ["brs-moto-worker"]}])["SecurityGroups"]
    check(len(wsgs) == 1, f"worker: its own security group ({len(wsgs)})")
    if wsgs:
        perms = wsgs[0].get("IpPermissions", [])
        ranges = [r.get("CidrIp") for p in perms for r in p.get("IpRanges", [])]
        check(len(perms) == 1 and perms[0].get("IpProtocol") == "tcp" and (perms[0].get("FromPort"), perms[0].get("ToPort")) == (WORKER_OPS_PORT, WORKER_OPS_PORT)
              and ranges == [VPC_CIDR] and not perms[0].get("Ipv6Ranges") and not perms[0].get("UserIdGroupPairs"),
              f"worker: the only way in is TCP {WORKER_OPS_PORT} (operations port) from the VPC's CIDR {VPC_CIDR}, not 0.0.0.0/0 ({perms})")

    # --- S3 and SQS ---------------------------------------------------------------------------------
    bucket = out["jobs_bucket"]
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    check(all(pab.values()) and len(pab) == 4, f"jobs bucket blocks every kind of public access ({pab})")
    enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    check(enc.get("SSEAlgorithm") == "AES256", f"jobs bucket encrypts by default ({enc})")
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    expiry = {i: (r.get("Filter", {}).get("Prefix"), r.get("Expiration", {}).get("Days")) for i, r in rules.items() if "Expiration" in r}
    want_expiry = {ns["prefix"].rstrip("/"): (ns["prefix"], EXPIRE_DAYS.get(ns["expire_days"], ns["expire_days"])) for ns in NAMESPACES}
    check(expiry == want_expiry, f"lifecycle: one rule per namespace of store-namespaces.json ({expiry})")
    abort = rules.get("abort-incomplete-uploads", {})
    check(abort.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1 and not abort.get("Filter", {}).get("Prefix"),
          f"lifecycle: incomplete multipart uploads anywhere in the bucket are aborted after a day ({abort})")
    bpol = statements(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    check(any(s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false" for s in bpol), "jobs bucket policy denies non-TLS requests")
    roles = out["role_arns"]
    fence = by_sid(bpol).get("DenyObjectAccessOutsideBrsRoles", {})
    check(fence.get("Effect") == "Deny" and fence.get("Principal") in ("*", {"AWS": "*"})
          and actions_of(fence) == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} and resources_of(fence) == {f"arn:aws:s3:::{bucket}/*"}
          and set(as_list(fence.get("Condition", {}).get("ArnNotEquals", {}).get("aws:PrincipalArn", []))) == {roles[k] for k in ROLE_KINDS},
          f"jobs bucket policy denies object access to every principal but the four brs roles ({fence})")
    own = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"][0]["ObjectOwnership"]
    check(own == "BucketOwnerEnforced", "jobs bucket has ACLs disabled (BucketOwnerEnforced)")

    qa = sqs.get_queue_attributes(QueueUrl=out["jobs_queue_url"], AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=out["jobs_dlq_url"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(qa.get("RedrivePolicy", "{}"))
    check(redrive.get("deadLetterTargetArn") == dlq.get("QueueArn") and int(redrive.get("maxReceiveCount", 0)) == MAX_RECEIVES,
          f"jobs queue redrives to the DLQ after max_receives = {MAX_RECEIVES} receives, the value serve.toml has ({redrive})")
    check(qa.get("VisibilityTimeout") == "120" and qa.get("ReceiveMessageWaitTimeSeconds") == "20", "jobs queue: visibility 120 s, long polling 20 s")
    check(qa.get("SqsManagedSseEnabled") == "true" and dlq.get("SqsManagedSseEnabled") == "true", "both queues are encrypted (SQS-managed SSE)")
    qpol = statements(qa.get("Policy", '{"Statement": []}'))
    check(any(s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false" for s in qpol), "queue policy denies non-TLS requests")
    granted = {s["Principal"]["AWS"]: actions_of(s) for s in qpol if s["Effect"] == "Allow"}
    check(granted == {roles["serve"]: WEB_SQS, roles["worker"]: WORKER_SQS, roles["lambda-api"]: {"sqs:SendMessage", "sqs:GetQueueAttributes"},
                      roles["lambda-worker"]: WORKER_SQS}, "queue policy grants each brs role exactly its actions")

    # --- IAM: least privilege -----------------------------------------------------------------------
    secret_arn = out["secret_arn"]
    models_ap_arn = efs.describe_access_points(AccessPointId=out["efs_access_point_ids"]["models"])["AccessPoints"][0]["AccessPointArn"]
    for kind, asg_arn in (("serve", out["asg_arn"]), ("worker", out["worker_asg_arn"])):
        st = by_sid(role_policy(iam, f"brs-moto-{kind}"))
        check(actions_of(st.get("OwnGroupLifecycle", {})) == LIFECYCLE and resources_of(st["OwnGroupLifecycle"]) == {asg_arn},
              f"{kind}: lifecycle actions only on its own group")
        check(resources_of(st.get("ReadTheReleaseBundle", {})) == {BUNDLE_ARN} and actions_of(st["ReadTheReleaseBundle"]) == {"s3:GetObject"},
              f"{kind}: reads exactly the bundle object")
        check(resources_of(st.get("ReadTheDeploymentSecret", {})) == {secret_arn}, f"{kind}: reads exactly the deployment secret")
        check(actions_of(st.get("EfsMountThroughAccessPoints", {})) == {"elasticfilesystem:ClientMount"} and "EfsWriteThroughAccessPoints" not in st,
              f"{kind}: EFS ClientMount only (read-only), no ClientWrite")
        check_store_grants(kind, st)
        check(actions_of(st.get("JobsQueue", {})) == (WEB_SQS if kind == "serve" else WORKER_SQS), f"{kind}: queue actions")
    tst = by_sid(role_policy(iam, "brs-moto-training"))
    check("EfsWriteThroughAccessPoints" in tst and set(tst) <= {"EfsMountThroughAccessPoints", "EfsWriteThroughAccessPoints", "ReadTheReleaseBundle"},
          f"training: EFS read-write through its access point and its bundle, nothing else: no store, queue, secret or key ({sorted(tst)})")
    for kind in ("serve", "worker", "training"):
        attached = iam.list_attached_role_policies(RoleName=f"brs-moto-{kind}")["AttachedPolicies"]
        check(not attached, f"{kind}: no managed policy attached (enable_ssm_session_manager is off by default) ({attached})")
    for kind in ("lambda-api", "lambda-worker"):
        st = by_sid(role_policy(iam, f"brs-moto-{kind}"))
        mount = st.get("EfsMountThroughAccessPoints", {})
        check(actions_of(mount) == {"elasticfilesystem:ClientMount"} and "EfsWriteThroughAccessPoints" not in st
              and as_list(mount.get("Condition", {}).get("StringEquals", {}).get("elasticfilesystem:AccessPointArn")) == [models_ap_arn],
              f"{kind}: EFS ClientMount of the models access point only (read-only)")
        check(all(r != "*" for sid, s in st.items() if sid != "VpcEnis" for r in resources_of(s)), f"{kind}: '*' only for the ENI actions")
        check_store_grants(kind, st)
        check(resources_of(st.get("ReadTheDeploymentSecret", {})) == {secret_arn} and actions_of(st["ReadTheDeploymentSecret"]) == {"secretsmanager:GetSecretValue"},
              f"{kind}: reads exactly the deployment secret (BRS_SECRET_ARN, at init)")

    # --- EFS ----------------------------------------------------------------------------------------
    fs = efs.describe_file_systems(FileSystemId=out["efs_id"])["FileSystems"]
    check(len(fs) == 1 and fs[0]["Encrypted"], "EFS file system exists and is encrypted")
    mts = efs.describe_mount_targets(FileSystemId=out["efs_id"])["MountTargets"]
    check(len(mts) == 2, f"one mount target per zone (2, got {len(mts)})")
    aps = {ap["AccessPointId"]: ap for ap in efs.describe_access_points(FileSystemId=out["efs_id"])["AccessPoints"]}
    paths = {k: aps.get(i, {}).get("RootDirectory", {}).get("Path") for k, i in out["efs_access_point_ids"].items()}
    check(paths == {"models": "/brs/models", "training": "/brs"}, f"access points: models and training, no results with s3_sqs ({paths})")
    check(all(ap["PosixUser"]["Uid"] == 5000 for ap in aps.values()), "access points force uid 5000")
    fpol = statements(efs.describe_file_system_policy(FileSystemId=out["efs_id"])["Policy"])
    fsid = by_sid(fpol)
    check(fsid.get("DenyUnencryptedTransport", {}).get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false", "EFS policy denies non-TLS access")
    deny = fsid.get("DenyServingWritesOutsideResults", {})
    readers = {roles[k] for k in ("serve", "worker", "lambda-api", "lambda-worker")}
    check(deny.get("Effect") == "Deny" and "elasticfilesystem:ClientWrite" in actions_of(deny) and set(as_list(deny["Principal"]["AWS"])) == readers,
          "EFS policy denies ClientWrite to every serving role (explicit deny: identity policies cannot lift it)")
    allow = fsid.get("ServingMountModelsReadOnly", {})
    check(actions_of(allow) == {"elasticfilesystem:ClientMount"}
          and as_list(allow.get("Condition", {}).get("StringEquals", {}).get("elasticfilesystem:AccessPointArn")) == [aps[out["efs_access_point_ids"]["models"]]["AccessPointArn"]],
          "EFS policy lets the serving roles mount only the models access point")
    if mts:
        efs_sgs = efs.describe_mount_target_security_groups(MountTargetId=mts[0]["MountTargetId"])["SecurityGroups"]
        sg = ec2.describe_security_groups(GroupIds=efs_sgs)["SecurityGroups"][0]
        perms = sg["IpPermissions"]
        check(bool(perms) and all(p["IpProtocol"] == "tcp" and p["FromPort"] == 2049 and p["ToPort"] == 2049 for p in perms), "EFS security group admits TCP 2049 only")
        check(all(not p.get("IpRanges") and not p.get("Ipv6Ranges") for p in perms), "EFS security group admits no CIDR")
        sources = {g["GroupId"] for p in perms for g in p.get("UserIdGroupPairs", [])}
        check(len(sources) == 4, f"EFS admits exactly the serve, worker, lambda and training groups ({len(sources)})")

    # --- WAF, the secret ----------------------------------------------------------------------------
    acl = waf.get_web_acl_for_resource(ResourceArn=out["alb_arn"]).get("WebACL", {})
    check(acl.get("ARN") == out["web_acl_arn"], "the WAF web ACL is associated with the load balancer")
    rate = [r for r in acl.get("Rules", []) if "RateBasedStatement" in r.get("Statement", {})]
    check(len(rate) == 1 and rate[0]["Statement"]["RateBasedStatement"]["Limit"] == 1000
          and rate[0]["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP" and "Block" in rate[0]["Action"],
          "WAF blocks a client IP above 1000 requests per window")
    logging = waf.get_logging_configuration(ResourceArn=out["web_acl_arn"])["LoggingConfiguration"]
    redacted = {f.get("SingleHeader", {}).get("Name", "uri_path" if "UriPath" in f else None) for f in logging.get("RedactedFields", [])}
    check(redacted == {"authorization", "x-api-key", "uri_path"}, f"WAF logs redact the API key headers and the URI path (ids) ({redacted})")
    secret = sm.get_secret_value(SecretId=secret_arn)["SecretString"]
    check(len(secret) == 64 and secret.isalnum(), "the deployment secret is 64 random characters")
    # Ephemeral password, write-only secret_string_wo: neither the plan nor the state holds the value.
    check(secret not in json.dumps(plan), "the secret's value is not in the plan")
    if state_text is not None:
        check(secret not in state_text, "the secret's value is not in terraform's state")

    # --- Lambda -------------------------------------------------------------------------------------
    lam = client(endpoint, "lambda")
    fns = out["lambda_function_names"]
    for kind, mode in (("lambda-api", "http"), ("lambda-worker", "sqs")):
        cfg = lam.get_function_configuration(FunctionName=fns[kind])
        env = cfg.get("Environment", {}).get("Variables", {})
        check(cfg.get("PackageType") == "Image" and len(cfg.get("VpcConfig", {}).get("SubnetIds", [])) == 2, f"{kind}: container image in the private subnets")
        check(env == {"BRS_LAMBDA_MODE": mode, "BRS_MODEL_DIR": "/mnt/models/anime", "BRS_SECRET_ARN": secret_arn, "BRS_STORE_S3_BUCKET": bucket,
                      "BRS_QUEUE_SQS_URL": out["jobs_queue_url"], "BRS_QUEUE_MAX_RECEIVES": str(MAX_RECEIVES),
                      "BRS_ENGINE": "onnx"},
              f"{kind}: environment as docs/aws.md lists it, the secret by ARN only ({sorted(env)})")
        check(secret not in json.dumps(cfg), f"{kind}: the secret's value is nowhere in the function's configuration")
        mount = planned(plan, f'module.brs.aws_lambda_function.this["{kind}"]').get("file_system_config", [])
        check(len(mount) == 1 and mount[0].get("local_mount_path") == "/mnt/models",
              f"{kind}: mounts the models access point at /mnt/models (from the applied plan: moto drops FileSystemConfigs)")
    url = lam.get_function_url_config(FunctionName=fns["lambda-api"])
    check(url.get("AuthType") == "AWS_IAM", "lambda-api has an IAM-authorised function URL")
    worker_arn = lam.get_function_configuration(FunctionName=fns["lambda-worker"])["FunctionArn"]
    esm = [m for m in lam.list_event_source_mappings()["EventSourceMappings"] if m["FunctionArn"] == worker_arn]
    check(len(esm) == 1 and esm[0]["EventSourceArn"] == qa.get("QueueArn") and esm[0].get("FunctionResponseTypes") == ["ReportBatchItemFailures"]
          and esm[0].get("BatchSize") == 4 and esm[0].get("ScalingConfig", {}).get("MaximumConcurrency") == 10,
          f"lambda-worker: fed by the jobs queue, batches of 4, at most 10 at once, partial batch failures ({esm[:1]})")
    wcfg = lam.get_function_configuration(FunctionName=fns["lambda-worker"])
    check(wcfg.get("Timeout", 0) <= 120, "lambda-worker: timeout within the queue's visibility timeout")

    # --- training -----------------------------------------------------------------------------------
    res = ec2.describe_instances(InstanceIds=[out["training_instance_id"]])["Reservations"]
    inst = res[0]["Instances"][0] if res else {}
    check(inst.get("MetadataOptions", {}).get("HttpTokens") == "required", "training instance requires IMDSv2")
    ud = ec2.describe_instance_attribute(InstanceId=out["training_instance_id"], Attribute="userData").get("UserData", {}).get("Value", "")
    ud = base64.b64decode(ud).decode() if ud else ""
    shell_clean(ud, "training")
    tm = fstab_mounts(ud).get("/mnt/brs", {})
    check("ro" not in tm.get("options", ["ro"]) and f"accesspoint={out['efs_access_point_ids']['training']}" in tm.get("options", []),
          "training: mounts /brs read-write through the training access point")


def check_gone(endpoint: str, out: dict) -> None:
    asg_c = client(endpoint, "autoscaling")
    groups = asg_c.describe_auto_scaling_groups(AutoScalingGroupNames=[out["asg_name"], out["worker_asg_name"]])["AutoScalingGroups"]
    check(not groups, "Auto Scaling groups are gone after destroy")
    fs = client(endpoint, "efs").describe_file_systems()["FileSystems"]
    check(all(f["FileSystemId"] != out["efs_id"] for f in fs), "EFS file system is gone after destroy")
    lts = client(endpoint, "ec2").describe_launch_templates()["LaunchTemplates"]
    check(all(t["LaunchTemplateId"] not in (out["launch_template_id"], out["worker_launch_template_id"]) for t in lts), "launch templates are gone")
    buckets = {b["Name"] for b in client(endpoint, "s3").list_buckets()["Buckets"]}
    check(out["jobs_bucket"] not in buckets, "jobs bucket is gone after destroy")
    queues = client(endpoint, "sqs").list_queues().get("QueueUrls", [])
    check(out["jobs_queue_url"] not in queues and out["jobs_dlq_url"] not in queues, "queues are gone after destroy")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoint", required=True, help="moto base URL (loopback)")
    ap.add_argument("--outputs", required=True, help="terraform output -json of the test root")
    ap.add_argument("--plan", help="terraform show -json of the applied plan (for what moto does not keep)")
    ap.add_argument("--refresh-plan", help="terraform show -json of a plan with another bundle_sha256")
    ap.add_argument("--state", help="terraform.tfstate of the test root (the secret's value must not be in it)")
    ap.add_argument("--expect-gone", action="store_true", help="check that destroy removed the resources")
    args = ap.parse_args()
    if not re.fullmatch(r"http://127\.0\.0\.1:\d+", args.endpoint):
        print("refusing a non-loopback endpoint", file=sys.stderr)
        return 2
    with open(args.outputs) as f:
        out = json.load(f)["brs"]["value"]
    if args.expect_gone:
        check_gone(args.endpoint, out)
    else:
        if not args.plan:
            ap.error("--plan is required unless --expect-gone")
        with open(args.plan) as f:
            plan = json.load(f)
        refresh = None
        if args.refresh_plan:
            with open(args.refresh_plan) as f:
                refresh = json.load(f)
        state_text = None
        if args.state:
            with open(args.state) as f:
                state_text = f.read()
        check_present(args.endpoint, out, plan, refresh, state_text)
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
