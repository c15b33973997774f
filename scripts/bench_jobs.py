"""The seed workload: 100 photos submitted as one job, translated in the background.

Runs the same job through both setups of brs-serve, one after the other, on one release binary
and one light 256 px generator (ch 64, n_res 4, random weights):

- `fs + local`: the default (results on local disk, the in-process queue);
- `s3 + sqs`: S3 and SQS on a moto server on loopback (what production uses on AWS), with a
  separate `brs-serve worker` process beside the HTTP instance, as a worker group would run.

For each: seconds from the POST to the last result, images per second, and the overhead per image
beyond the generator itself: (wall time x workers' inference threads - summed forward-pass
seconds) / images, where the forward-pass seconds come from the servers' own
brs_inference_seconds histograms. For `s3 + sqs` the worker process also serves its operations
port (worker.ops_bind), and its /metrics, scraped after the run, split the time of each job image
it ran: S3 calls, SQS calls (settling and visibility extensions; receives, which include the long
poll's wait, apart), the translation (job slot, decode, batch wait, forward pass, encode) and the
forward pass itself. The reference point is a sibling system's 310 s for 100 images on 19 instances; this
is one 2-core machine. Writes out/bench-jobs/summary.json.

Usage: scripts/bench-jobs [--images 100] [--out out/bench-jobs] [--bin PATH]
"""

import argparse
import http.client
import json
import os
import platform
import re
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
    m = scrape(port)
    return total(m, "brs_inference_seconds_sum"), int(total(m, "brs_inference_seconds_count"))


def scrape(port):
    """Every sample of a Prometheus text page: (name, {label: value}, value)."""
    text = call(port, "GET", "/metrics")[1].decode()
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)
        out.append((name, dict(pairs), float(value)))
    return out


def total(samples, name, **labels):
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in labels.items()))


def split(samples):
    """Where a worker process's time per job image went, in ms, from its own /metrics.

    brs_job_image_seconds{stage="total"} runs from a message's receipt to its settling; within it
    stage="translate" (wait for a job slot, decode, wait for a batch, forward pass, encode), every store call
    (brs_store_op_seconds: S3 gets and puts of the input, the dedup entry, the result, the job's
    manifest and item state) and the settling SQS call; visibility extensions run beside it. The
    forward pass alone is brs_inference_seconds per translated image (a batch's time shared by its
    images). Receives are per call and include the long poll's wait for messages, so they are
    reported apart and not charged to images.
    """
    images = total(samples, "brs_job_image_seconds_count", stage="total")
    translated = total(samples, "brs_images_translated_total")
    r = {"job_images": int(images or total(samples, "brs_job_items_total")),
         "translated": int(translated),
         "forward_ms_per_image": round(1000 * total(samples, "brs_inference_seconds_sum") / translated, 1) if translated else None}
    if not images:
        r["note"] = "no brs_job_image_seconds in this brs-serve's /metrics: only the forward pass is split out"
        return r

    def per(seconds):
        return round(1000 * seconds / images, 1)

    ops = sorted({ls.get("op") for n, ls, _ in samples if n == "brs_store_op_seconds_count"})
    store = {op: per(total(samples, "brs_store_op_seconds_sum", op=op)) for op in ops}
    store_calls = {op: total(samples, "brs_store_op_seconds_count", op=op) / images for op in ops}
    queue = {op: per(total(samples, "brs_queue_op_seconds_sum", op=op)) for op in ("delete", "release", "extend")}
    image_ms = per(total(samples, "brs_job_image_seconds_sum", stage="total"))
    translate_ms = per(total(samples, "brs_job_image_seconds_sum", stage="translate"))
    store_ms, queue_ms = round(sum(store.values()), 1), round(queue["delete"] + queue["release"], 1)
    receives = total(samples, "brs_queue_op_seconds_count", op="receive")
    r.update({
        "image_ms": image_ms,
        "translate_ms": translate_ms,
        "store_ms": store_ms,
        "store_ms_by_op": store,
        "store_calls_per_image": {op: round(n, 2) for op, n in store_calls.items()},
        "queue_settle_ms": queue_ms,
        "queue_extend_ms": queue["extend"],
        "other_ms": round(image_ms - translate_ms - store_ms - queue_ms, 1),
        "receives": int(receives),
        "receive_ms_per_call": round(1000 * total(samples, "brs_queue_op_seconds_sum", op="receive") / receives, 1) if receives else None,
    })
    return r


def print_split(r):
    if "image_ms" not in r:
        print("bench-jobs: worker: %d job images, forward pass %s ms per image (%s)"
              % (r["job_images"], r["forward_ms_per_image"], r.get("note", "")), file=sys.stderr)
        return
    print("bench-jobs: worker, per job image (%d images): %.1f ms = translate %.1f (forward pass %s)"
          " + S3 %.1f + SQS settle %.1f + other %.1f; SQS extensions %.1f beside it; %d receives, %s ms each"
          % (r["job_images"], r["image_ms"], r["translate_ms"], r["forward_ms_per_image"], r["store_ms"],
             r["queue_settle_ms"], r["other_ms"], r["queue_extend_ms"], r["receives"], r["receive_ms_per_call"]),
          file=sys.stderr)
    print("bench-jobs: worker, S3 ms per image by call: %s" % json.dumps(r["store_ms_by_op"]), file=sys.stderr)


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
        # The worker's operations port: /readyz says when it consumes, /metrics what it did.
        ops_port = free_port()
        worker = subprocess.Popen([binary, "worker", "--model-dir", model] + sections
                                  + ["--set", "worker.ops_bind=127.0.0.1:%d" % ops_port], env=aws_env,
                                  stderr=open(os.path.join(args.out, "s3-sqs-worker.log"), "w"))
        procs.append(worker)
        wait_ready(port, web)
        wait_ready(ops_port, worker)
        wall, accepted, failed = run_job(port, args.images)
        fwd, batches = inference_seconds(port)
        wfwd, wbatches = inference_seconds(ops_port)
        summary["s3_sqs"] = report(wall, accepted, failed, fwd + wfwd, batches + wbatches, args.images, workers=2,
                                   note="forward passes of both processes (the HTTP instance also consumes)")
        summary["s3_sqs"]["forward_passes_by_process"] = {"http": [batches, round(fwd, 1)], "worker": [wbatches, round(wfwd, 1)]}
        summary["s3_sqs"]["worker_split_ms_per_image"] = split(scrape(ops_port))
        print_split(summary["s3_sqs"]["worker_split_ms_per_image"])
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
