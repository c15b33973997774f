"""Turns IAM enforcement on in a running moto server, after giving it the users a test signs as.

Reads {"USER": POLICY_DOCUMENT, ...} as JSON on stdin; creates each user with that document as
its only (inline) policy and an access key; prints one line "USER KEY_ID SECRET" per user; then
asks moto to check every later request's signature and permissions (moto's reset-auth with a
count of 0). Run by brs-testkit's Moto::enforce_iam.
"""

import json
import sys
import urllib.request

import boto3


def main() -> None:
    endpoint = sys.argv[1]
    users = json.load(sys.stdin)
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for name, policy in users.items():
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        print(name, key["AccessKeyId"], key["SecretAccessKey"])
    # Not form-encoded (urllib's default for a body): moto reads the count from the raw body.
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        if r.status != 200:
            sys.exit(f"moto reset-auth answered {r.status}")


if __name__ == "__main__":
    main()
