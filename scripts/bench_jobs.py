"""The seed workload: 100 photos submitted as one job, translated in the background.

Runs the same job through both setups of brs-serve, one after the other, on one release binary
and one light 256 px generator (ch 64, n_res 4, random weights):

- `fs + local`: the default (results on local disk, the in-process queue);
- `s3 + sqs`: S3 and SQS on a moto server on loopback (what production uses on AWS), with a
  separate `brs-serve worker` process beside the HTTP instance, as a worker group would run.

For each: seconds from the POST to the last result, images per second, and the overhead per image
beyond the generator itself: (wall time x workers' inference threads - summed forward-pass
seconds) / images, where the forward-pass seconds come from the servers' own
brs_inference_seconds histograms. The reference point is a sibling system's 310 s for 100 images
on 19 instances; this is one 2-core machine. Writes out/bench-jobs/summary.json.

Usage: scripts/bench-jobs [--images 100] [--out out/bench-jobs] [--bin PATH]
"""

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv", "bin")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None, headers=None, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_ready(port, proc, limit=300):
    t = time.time()
    while True:
        try:
            if call(port, "GET", "/readyz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None or time.time() - t > limit:
            sys.exit("bench-jobs: brs-serve did not become ready")
        time.sleep(0.2)


def inference_seconds(port):
    """Summed forward-pass seconds and batches, from /metrics."""
    text = call(port, "GET", "/metrics")[1].decode()
    total, count = 0.0, 0
    for line in text.splitlines():
        if line.startswith("brs_inference_seconds_sum{"):
            total += float(line.split()[-1])
        elif line.startswith("brs_inference_seconds_count{"):
            count += int(float(line.split()[-1]))
    return total, count


def photos(n):
    fixtures = os.path.join(ROOT, "data", "fixtures")
    base = [open(os.path.join(fixtures, f), "rb").read() for f in ("astronaut.png", "grace_hopper.jpg", "coffee.png")]
    # Distinct bytes per image, so no result is a repeat (a repeat costs no inference).
    return [(("p%03d.%s" % (i, "jpg" if base[i % 3].startswith(b"\xff\xd8") else "png")),
             base[i % 3] + i.to_bytes(2, "big")) for i in range(n)]


def multipart(files):
    boundary = "brsjobs" + uuid.uuid4().hex
    out = []
    for name, body in files:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"%s\"\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n" % (boundary, name)).encode())
        out.append(body)
        out.append(b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary


def run_job(port, n):
    body, ctype = multipart(photos(n))
    t0 = time.monotonic()
    status, data = call(port, "POST", "/v1/jobs", body, {"content-type": ctype})
    if status != 202:
        sys.exit("bench-jobs: POST /v1/jobs answered %s: %s" % (status, data[:300]))
    job = json.loads(data)
    accepted = time.monotonic() - t0
    while True:
        v = json.loads(call(port, "GET", "/v1/jobs/" + job["id"])[1])
        if v["status"] == "done":
            break
        time.sleep(0.25)
    wall = time.monotonic() - t0
    failed = [i for i in v["items"] if i["status"] != "done"]
    return wall, accepted, failed


def server_cmd(binary, model, port, extra):
    return [binary, "--model-dir", model, "--bind", "127.0.0.1:%d" % port,
            "--set", "max_job_images=%d" % 1000, "--set", "http.max_parts=1000",
            "--set", "clients.image_burst=100000"] + extra


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "bench-jobs"))
    ap.add_argument("--bin", help="a brs-serve binary (default: cargo build --release)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if not args.bin:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "brs-serve", "--bins", "--examples"],
                       cwd=ROOT, check=True)
    binary = args.bin or os.path.join(ROOT, "target", "release", "brs-serve")
    model = os.path.join(args.out, "model")
    if not os.path.exists(os.path.join(model, "latest")):
        subprocess.run([os.path.join(ROOT, "target", "release", "examples", "random_export"),
                        model, "256", "64", "4", "light"], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, RUST_LOG="warn", BRS_SECRET="b" * 32)
    summary = {"images": args.images,
               "machine": {"cpus": os.cpu_count(), "avx2": "avx2" in open("/proc/cpuinfo").read(),
                           "avx512_bf16": "avx512_bf16" in open("/proc/cpuinfo").read(),
                           "kernel": platform.release()},
               "reference": "310 s for 100 images on 19 instances (a sibling system's report)"}

    # fs + local: one process.
    port = free_port()
    log = open(os.path.join(args.out, "fs-local.log"), "w")
    store = ["--set", "store.path=" + json.dumps(os.path.join(args.out, "fs-store"))]
    p = subprocess.Popen(server_cmd(binary, model, port, store), env=env, stderr=log)
    try:
        wait_ready(port, p)
        wall, accepted, failed = run_job(port, args.images)
        fwd, batches = inference_seconds(port)
    finally:
        p.terminate()
        p.wait(timeout=120)
    summary["fs_local"] = report(wall, accepted, failed, fwd, batches, args.images, workers=1)

    # s3 + sqs on moto: the HTTP instance (also consuming) and one worker process.
    moto_port = free_port()
    moto_bin = os.path.join(PY, "moto_server")
    moto = subprocess.Popen([moto_bin, "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [moto]
    try:
        endpoint = "http://127.0.0.1:%d" % moto_port
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", moto_port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or moto.poll() is not None:
                    sys.exit("moto_server did not start on port %d" % moto_port)
                time.sleep(0.2)
        aws_env = dict(env, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                       AWS_REGION="eu-west-1", AWS_EC2_METADATA_DISABLED="true")
        queue_url = setup_aws(endpoint)
        sections = ["--set", "store.kind=s3", "--set", "store.bucket=brs-bench",
                    "--set", "store.region=eu-west-1", "--set", "store.endpoint=" + json.dumps(endpoint),
                    "--set", "queue.kind=sqs", "--set", "queue.url=" + json.dumps(queue_url),
                    "--set", "queue.region=eu-west-1", "--set", "queue.endpoint=" + json.dumps(endpoint),
                    "--set", "queue.wait_time=1s"]
        port = free_port()
        web = subprocess.Popen(server_cmd(binary, model, port, sections), env=aws_env,
                               stderr=open(os.path.join(args.out, "s3-sqs-web.log"), "w"))
        procs.append(web)
        worker = subprocess.Popen([binary, "worker", "--model-dir", model] + sections, env=aws_env,
                                  stderr=open(os.path.join(args.out, "s3-sqs-worker.log"), "w"))
        procs.append(worker)
        wait_ready(port, web)
        time.sleep(2)
        wall, accepted, failed = run_job(port, args.images)
        fwd, batches = inference_seconds(port)
        summary["s3_sqs"] = report(wall, accepted, failed, fwd, batches, args.images, workers=2,
                                   note="forward-pass seconds of the HTTP instance only; the worker "
                                        "process has no metrics endpoint, so the overhead is an upper bound")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))


def report(wall, accepted, failed, fwd, batches, n, workers, note=None):
    r = {"seconds_to_last_result": round(wall, 1), "seconds_to_202": round(accepted, 2),
         "images_per_second": round(n / wall, 2), "failed": len(failed),
         "forward_seconds": round(fwd, 1), "forward_passes": batches}
    if workers == 1:
        # One inference thread: the time not spent in forward passes is the path's overhead.
        r["overhead_ms_per_image"] = round(1000 * (wall - fwd) / n, 1)
    if note:
        r["note"] = note
    return r


def setup_aws(endpoint):
    import boto3
    kw = dict(endpoint_url=endpoint, region_name="eu-west-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    s3 = boto3.client("s3", **kw)
    s3.create_bucket(Bucket="brs-bench", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    sqs = boto3.client("sqs", **kw)
    dlq = sqs.create_queue(QueueName="brs-bench-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    q = sqs.create_queue(QueueName="brs-bench", Attributes={
        "VisibilityTimeout": "60",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})})
    return q["QueueUrl"]


if __name__ == "__main__":
    main()
