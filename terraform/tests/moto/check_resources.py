"""Checks, through the AWS APIs of a moto server, what `terraform apply` of tests/moto created.

Run by scripts/checks/terraform between apply and destroy (and with --expect-gone after destroy).
It asserts the properties the deployment depends on, not merely that resources exist: the termination
hook, IMDSv2, encryption, the EFS security group admitting only brs compute, the lifecycle permissions
scoped to the one group, and the serve.toml the user data writes (parsed as TOML, [aws] keys exact).
"""

import argparse
import base64
import json
import re
import subprocess
import sys
import tomllib

import boto3

REGION = "us-east-1"
# Exactly the keys brs-serve's [aws] table accepts today (it refuses unknown ones).
AWS_KEYS = {"region", "asg_name", "lifecycle_hook", "drain_timeout_secs"}
# brs-serve's config keys (docs/serving.md, brs-serve/src/config.rs): it refuses any other, so a key
# outside this set would stop every instance at boot.
SERVE_KEYS = {
    "bind", "device", "max_batch", "max_wait_ms", "queue_depth", "request_timeout", "max_upload_bytes",
    "max_pixels", "max_side", "max_output_size", "max_job_images", "results_dir", "results_max_age_hours",
    "reload_poll_ms",
    "drain_grace_secs", "drain_timeout_secs", "default_style", "styles", "detector", "crop", "precision", "aws",
}
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


def serve_toml_from_user_data(user_data: str) -> str:
    m = re.search(r"<<'EOF_BRS_SERVE_TOML'\n(.*?)\nEOF_BRS_SERVE_TOML\n", user_data, re.S)
    return m.group(1) if m else ""


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


def configured(plan: dict, module: str, address: str) -> dict:
    """Configuration expressions of one resource of a module call in the plan JSON."""
    resources = plan["configuration"]["root_module"]["module_calls"][module]["module"]["resources"]
    return next((r["expressions"] for r in resources if r["address"] == address), {})


def check_present(endpoint: str, out: dict, plan: dict) -> None:
    asg_c = client(endpoint, "autoscaling")
    ec2 = client(endpoint, "ec2")
    efs = client(endpoint, "efs")
    elbv2 = client(endpoint, "elbv2")
    iam = client(endpoint, "iam")

    asg_name, hook_name = out["asg_name"], out["lifecycle_hook_name"]
    groups = asg_c.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])["AutoScalingGroups"]
    check(len(groups) == 1, f"Auto Scaling group {asg_name} exists")
    if not groups:
        return
    asg = groups[0]
    check((asg["MinSize"], asg["MaxSize"]) == (1, 3), "ASG min/max are the test root's 1/3")
    check(asg.get("HealthCheckType") == "ELB", "ASG uses the load balancer's health check")
    check(out["target_group_arn"] in asg.get("TargetGroupARNs", []), "ASG registers into the target group")
    check(asg.get("LaunchTemplate", {}).get("LaunchTemplateId") == out["launch_template_id"], "ASG uses the launch template")

    hooks = asg_c.describe_lifecycle_hooks(AutoScalingGroupName=asg_name)["LifecycleHooks"]
    term = [h for h in hooks if h["LifecycleHookName"] == hook_name]
    check(len(term) == 1, f"lifecycle hook {hook_name} exists on the group")
    if term:
        h = term[0]
        check(h["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING", "the hook fires on termination")
        check(h["HeartbeatTimeout"] == 300, "the hook's heartbeat timeout is the default 300 s")
        check(h["DefaultResult"] == "CONTINUE", "the hook's default result is CONTINUE")

    policies = asg_c.describe_policies(AutoScalingGroupName=asg_name)["ScalingPolicies"]
    tt = [p for p in policies if p.get("PolicyType") == "TargetTrackingScaling"]
    check(len(tt) == 1, "one target-tracking policy")
    if tt:
        spec = tt[0]["TargetTrackingConfiguration"]["PredefinedMetricSpecification"]
        check(spec["PredefinedMetricType"] == "ALBRequestCountPerTarget", "it tracks ALBRequestCountPerTarget")
        check(
            re.fullmatch(r"app/brs-moto-alb/[^/]+/targetgroup/brs-moto-serve/[^/]+", spec.get("ResourceLabel", "")) is not None,
            f"its resource label names the ALB and target group ({spec.get('ResourceLabel')})",
        )
        check(tt[0]["TargetTrackingConfiguration"]["TargetValue"] == 60.0, "its target is the default 60 requests/min")

    versions = ec2.describe_launch_template_versions(LaunchTemplateId=out["launch_template_id"], Versions=["$Latest"])[
        "LaunchTemplateVersions"
    ]
    check(len(versions) == 1, "launch template has a latest version")
    if versions:
        data = versions[0]["LaunchTemplateData"]
        md = data.get("MetadataOptions", {})
        check(md.get("HttpTokens") == "required", "launch template requires IMDSv2 (HttpTokens=required)")
        check(int(md.get("HttpPutResponseHopLimit", 0)) == 1, "IMDS hop limit is 1")
        ebs = [b.get("Ebs", {}) for b in data.get("BlockDeviceMappings", [])]
        check(bool(ebs) and all(e.get("Encrypted") in (True, "true") for e in ebs), "root volume is encrypted")
        check("IamInstanceProfile" in data, "launch template has an instance profile")
        user_data = base64.b64decode(data.get("UserData", "")).decode()
        syntax = subprocess.run(["bash", "-n"], input=user_data, text=True, capture_output=True)
        check(syntax.returncode == 0, f"user data is valid bash {syntax.stderr.strip()}")
        fstab = re.search(r"(fs-[0-9a-z]+):/ \$MOUNT efs (\S+) 0 0", user_data)
        check(fstab is not None and fstab.group(1) == out["efs_id"], "user data mounts this EFS file system")
        if fstab:
            opts = fstab.group(2).split(",")
            check({"tls", "iam", "_netdev", f"accesspoint={out['efs_access_point_id']}"} <= set(opts), f"mount options have tls, iam, _netdev and the access point ({opts})")
        check("ExecStart=/usr/local/bin/brs-serve --config /etc/brs/serve.toml" in user_data, "systemd unit runs brs-serve --config /etc/brs/serve.toml")
        text = serve_toml_from_user_data(user_data)
        check(text == out["serve_toml"], "user data writes exactly the serve_toml output")
        try:
            conf = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            conf = {}
            check(False, f"serve.toml parses as TOML ({e})")
        aws = conf.get("aws", {})
        check(set(aws) == AWS_KEYS, f"[aws] has exactly the documented keys ({sorted(aws)})")
        check(aws.get("region") == REGION and aws.get("asg_name") == asg_name and aws.get("lifecycle_hook") == hook_name,
              "[aws] names this region, group and hook")
        check(aws.get("drain_timeout_secs") == 120, "[aws] drain timeout is the default 120 s")
        check(set(conf) <= SERVE_KEYS, f"serve.toml uses only brs-serve's keys ({sorted(set(conf) - SERVE_KEYS)} unknown)")
        check(conf.get("styles") == {"anime": {"path": "/mnt/brs/models/anime"}, "male": {"path": "/mnt/brs/models/runs/male"}},
              "styles are run directories on EFS")
        check(conf.get("results_dir") == "/mnt/brs/results" and conf.get("drain_timeout_secs") == 120, "results on EFS, server drain 120 s")
        check(conf.get("bind") == "0.0.0.0:8080" and conf.get("default_style") == "anime", "bind address and default style")
        check(conf.get("max_batch") == 4 and conf.get("queue_depth") == 16, "serve_config_extra keys are top-level")

    fs = efs.describe_file_systems(FileSystemId=out["efs_id"])["FileSystems"]
    check(len(fs) == 1 and fs[0]["Encrypted"], "EFS file system exists and is encrypted")
    mts = efs.describe_mount_targets(FileSystemId=out["efs_id"])["MountTargets"]
    check(len(mts) == 2, f"one mount target per zone (2, got {len(mts)})")
    aps = efs.describe_access_points(AccessPointId=out["efs_access_point_id"])["AccessPoints"]
    check(len(aps) == 1, "access point exists")
    if aps:
        ap = aps[0]
        check(ap["PosixUser"]["Uid"] == 5000 and ap["RootDirectory"]["Path"] == "/brs", "access point forces uid 5000 under /brs")
    policy = json.loads(efs.describe_file_system_policy(FileSystemId=out["efs_id"])["Policy"])
    deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    check(any(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false" for s in deny), "EFS policy denies non-TLS access")

    if mts:
        efs_sgs = efs.describe_mount_target_security_groups(MountTargetId=mts[0]["MountTargetId"])["SecurityGroups"]
        check(len(efs_sgs) == 1, "mount targets have one security group")
        sg = ec2.describe_security_groups(GroupIds=efs_sgs)["SecurityGroups"][0]
        serve_sg = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["brs-moto-serve"]}])["SecurityGroups"]
        perms = sg["IpPermissions"]
        check(bool(perms) and all(p["IpProtocol"] == "tcp" and p["FromPort"] == 2049 and p["ToPort"] == 2049 for p in perms),
              "EFS security group admits TCP 2049 only")
        check(all(not p.get("IpRanges") and not p.get("Ipv6Ranges") for p in perms), "EFS security group admits no CIDR")
        sources = {g["GroupId"] for p in perms for g in p.get("UserIdGroupPairs", [])}
        check(bool(serve_sg) and serve_sg[0]["GroupId"] in sources, "EFS admits the brs-serve instances' group")
        check(len(sources) == 3, f"EFS admits exactly serve, lambda and training groups ({len(sources)})")

    tgs = elbv2.describe_target_groups(TargetGroupArns=[out["target_group_arn"]])["TargetGroups"]
    check(len(tgs) == 1 and tgs[0]["HealthCheckPath"] == "/readyz" and tgs[0]["Port"] == 8080, "target group checks /readyz on port 8080")
    attrs = {a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(TargetGroupArn=out["target_group_arn"])["Attributes"]}
    check(attrs.get("deregistration_delay.timeout_seconds") == "120", "deregistration delay equals the drain time (120 s)")

    doc = iam.get_role_policy(RoleName="brs-moto-serve", PolicyName="own-group-lifecycle")["PolicyDocument"]
    if isinstance(doc, str):
        doc = json.loads(doc)
    stmts = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    resources = {r for s in stmts for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}
    actions = {a for s in stmts for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    check(resources == {out["asg_arn"]} and ":autoScalingGroupName/brs-moto-serve" in out["asg_arn"],
          f"lifecycle permissions cover only this group ({sorted(resources)})")
    check(actions == {"autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat", "autoscaling:SetInstanceProtection"},
          "lifecycle permissions are exactly complete, heartbeat and protection")

    if out.get("lambda_function_name"):
        lam = client(endpoint, "lambda")
        cfg = lam.get_function_configuration(FunctionName=out["lambda_function_name"])
        check(cfg.get("PackageType") == "Image", "Lambda is a container image")
        check(len(cfg.get("VpcConfig", {}).get("SubnetIds", [])) == 2, "Lambda is in the two private subnets")
        # moto 5.2 drops FileSystemConfigs from CreateFunction (and the provider then reads back an empty
        # list), so the mount is checked in the plan that was applied: the path, and an ARN taken from
        # the module's access point. If a later moto keeps the config, moto's copy must agree too.
        mount = planned(plan, "module.brs.aws_lambda_function.api[0]").get("file_system_config", [])
        arn_refs = configured(plan, "brs", "aws_lambda_function.api").get("file_system_config", [{}])[0].get("arn", {}).get("references", [])
        check(len(mount) == 1 and mount[0].get("local_mount_path") == "/mnt/brs" and "aws_efs_access_point.brs.arn" in arn_refs,
              "Lambda mounts the brs access point at /mnt/brs (checked in the applied plan: moto does not keep FileSystemConfigs)")
        if cfg.get("FileSystemConfigs"):
            fsc = cfg["FileSystemConfigs"]
            check(len(fsc) == 1 and fsc[0]["LocalMountPath"] == "/mnt/brs" and fsc[0]["Arn"].endswith(out["efs_access_point_id"]),
                  "moto's FileSystemConfigs name the access point")
        env = cfg.get("Environment", {}).get("Variables", {})
        check(env == {"BRS_MODEL_DIR": "/mnt/brs/models/anime", "BRS_RESULTS_DIR": "/mnt/brs/results"},
              f"Lambda serves the default style's run directory and shares the results ({env})")
        url = lam.get_function_url_config(FunctionName=out["lambda_function_name"])
        check(url.get("AuthType") == "AWS_IAM" and url.get("FunctionUrl", "").startswith("https://"), "Lambda has an IAM-authorised function URL")

    if out.get("training_instance_id"):
        res = ec2.describe_instances(InstanceIds=[out["training_instance_id"]])["Reservations"]
        inst = res[0]["Instances"][0] if res else {}
        check(inst.get("MetadataOptions", {}).get("HttpTokens") == "required", "training instance requires IMDSv2")


def check_gone(endpoint: str, out: dict) -> None:
    groups = client(endpoint, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[out["asg_name"]])["AutoScalingGroups"]
    check(not groups, "Auto Scaling group is gone after destroy")
    fs = client(endpoint, "efs").describe_file_systems()["FileSystems"]
    check(all(f["FileSystemId"] != out["efs_id"] for f in fs), "EFS file system is gone after destroy")
    lts = client(endpoint, "ec2").describe_launch_templates()["LaunchTemplates"]
    check(all(t["LaunchTemplateId"] != out["launch_template_id"] for t in lts), "launch template is gone after destroy")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoint", required=True, help="moto base URL (loopback)")
    ap.add_argument("--outputs", required=True, help="terraform output -json of the test root")
    ap.add_argument("--plan", help="terraform show -json of the applied plan (for what moto does not keep)")
    ap.add_argument("--expect-gone", action="store_true", help="check that destroy removed the resources")
    args = ap.parse_args()
    if not re.fullmatch(r"http://127\.0\.0\.1:\d+", args.endpoint):
        print("refusing a non-loopback endpoint", file=sys.stderr)
        return 2
    with open(args.outputs) as f:
        out = {k: v["value"] for k, v in json.load(f).items()}
    if args.expect_gone:
        check_gone(args.endpoint, out)
    else:
        if not args.plan:
            ap.error("--plan is required unless --expect-gone")
        with open(args.plan) as f:
            check_present(args.endpoint, out, json.load(f))
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
