"""Reads back, from a moto server after `terraform apply` of tests/moto, the inline policy of every role
a brs process runs as, and compares it with terraform/tests/policies.json (or, with --write, rewrites
that file).

Run by scripts/checks/terraform. The Rust tests that run brs against moto with IAM enforcement load
the file, so they run under exactly what terraform grants: a grant that terraform drops fails them,
and a key the store writes without a grant fails them too.

Values that differ from one apply to the next become placeholders, so the file is stable:
- whole ARNs a test must point at the resources it creates: ${bucket_arn}, ${queue_arn}, ${secret_arn};
- ids drawn at random inside ARNs nothing under test calls (EFS, access points, Auto Scaling groups):
  ${efs_id}, ${efs_access_point_<name>_id}, ${asg_id}; those ARNs stay valid, so a policy loads into
  moto with only the first three substituted.
Lists whose order IAM ignores (actions, resources, condition values) are sorted, keys are sorted, and
the file is indented by two spaces.
"""

import argparse
import difflib
import json
import re
import sys

import boto3

REGION = "us-east-1"
ROLES = ("serve", "worker", "lambda-api", "lambda-worker")
ABOUT = (
    "The inline IAM policy of each role a brs process runs as, as terraform renders it (terraform/iam.tf "
    "from terraform/store-namespaces.json), read back from moto after scripts/checks/terraform applies "
    "terraform/tests/moto. serve = brs-serve's HTTP instances (which also consume the queue), worker = "
    "`brs-serve worker`, lambda-api and lambda-worker = brs-lambda in http and sqs mode. Placeholders: "
    "${bucket_arn} (the jobs bucket), ${queue_arn} (the job queue) and ${secret_arn} (the deployment "
    "secret) stand for whole ARNs: substitute the ones a test creates. ${efs_id}, "
    "${efs_access_point_<name>_id} and ${asg_id} stand for ids drawn at random inside ARNs that no test "
    "calls; the documents load as they are. Generated: `BRS_TF_WRITE_POLICIES=1 scripts/checks/terraform` "
    "rewrites this file; without the variable the check fails when terraform renders anything else."
)


def placeholders(out: dict, queue_arn: str) -> list[tuple[str, str]]:
    """(concrete, placeholder) pairs, longest first so no pair rewrites part of a longer one."""
    pairs = [
        (out["jobs_bucket_arn"], "${bucket_arn}"),
        (queue_arn, "${queue_arn}"),
        (out["secret_arn"], "${secret_arn}"),
        (out["efs_id"], "${efs_id}"),
    ]
    pairs += [(ap, f"${{efs_access_point_{name}_id}}") for name, ap in out["efs_access_point_ids"].items()]
    for arn in (out["asg_arn"], out["worker_asg_arn"]):
        m = re.search(r":autoScalingGroup:([0-9a-f-]+):", arn or "")
        if m:
            pairs.append((m.group(1), "${asg_id}"))
    if any(not concrete for concrete, _ in pairs):
        sys.exit(f"policies: an output the placeholders need is empty ({pairs})")
    return sorted(pairs, key=lambda p: -len(p[0]))


def canonical(value):
    """Sort what IAM treats as a set; keep statement order (it is terraform's, and stable)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("Action", "NotAction", "Resource", "NotResource") and isinstance(v, list):
                out[k] = sorted(v)
            elif k == "Condition":
                out[k] = {op: {key: sorted(vals) if isinstance(vals, list) else vals for key, vals in keys.items()} for op, keys in v.items()}
            else:
                out[k] = canonical(v)
        return out
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def render(endpoint: str, out: dict) -> str:
    session = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    iam, sqs = boto3.client("iam", **session), boto3.client("sqs", **session)
    queue_arn = sqs.get_queue_attributes(QueueUrl=out["jobs_queue_url"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    if out.get("jobs_queue_arn") not in (None, queue_arn):
        sys.exit(f"policies: the jobs_queue_arn output ({out['jobs_queue_arn']}) is not the queue's ARN ({queue_arn})")
    roles = {}
    for role in ROLES:
        name = out["role_arns"][role].rsplit("/", 1)[-1]
        policies = iam.list_role_policies(RoleName=name)["PolicyNames"]
        if len(policies) != 1:
            sys.exit(f"policies: role {name} has {len(policies)} inline policies, expected exactly one")
        roles[role] = iam.get_role_policy(RoleName=name, PolicyName=policies[0])["PolicyDocument"]
    text = json.dumps(canonical({"about": ABOUT, "roles": roles}), indent=2, sort_keys=True)
    pairs = placeholders(out, queue_arn)
    for concrete, placeholder in pairs:
        text = text.replace(concrete, placeholder)
    # Anything random left over would make the file differ on every run.
    leftovers = [c for c, _ in pairs if c in text] + re.findall(r"fs-[0-9a-f]{8,}|fsap-[0-9a-f]{8,}|brs-moto-jobs-\d+", text)
    if leftovers:
        sys.exit(f"policies: values that change between applies are left in the rendered file: {sorted(set(leftovers))}")
    return text + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", required=True, help="moto base URL (loopback)")
    ap.add_argument("--outputs", required=True, help="terraform output -json of the test root")
    ap.add_argument("--fixture", required=True, help="terraform/tests/policies.json")
    ap.add_argument("--write", action="store_true", help="rewrite the fixture instead of comparing")
    args = ap.parse_args()
    if not re.fullmatch(r"http://127\.0\.0\.1:\d+", args.endpoint):
        print("refusing a non-loopback endpoint", file=sys.stderr)
        return 2
    with open(args.outputs) as f:
        out = json.load(f)["brs"]["value"]
    rendered = render(args.endpoint, out)
    if args.write:
        with open(args.fixture, "w") as f:
            f.write(rendered)
        print(f"policies: wrote {args.fixture}", file=sys.stderr)
        return 0
    try:
        with open(args.fixture) as f:
            committed = f.read()
    except FileNotFoundError:
        committed = ""
    if committed == rendered:
        print(f"policies: {args.fixture} matches what terraform renders", file=sys.stderr)
        return 0
    sys.stderr.writelines(difflib.unified_diff(committed.splitlines(keepends=True), rendered.splitlines(keepends=True),
                                               fromfile=f"{args.fixture} (committed)", tofile="rendered by terraform"))
    print(f"policies: {args.fixture} differs from the policies terraform renders (diff above); if the change is "
          "intended, `BRS_TF_WRITE_POLICIES=1 scripts/checks/terraform` rewrites it", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
