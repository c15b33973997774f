"""Load for brs-serve (and the Flask baseline): raw and multipart /v1/translate, and jobs.

Each user keeps one request in flight (no think time), so `-u N` means N concurrent requests.
A 503 is recorded as a failure named "503 backpressure" so the summary can count it apart from
real errors. Environment knobs:
  BRS_FIXTURES       folder with astronaut.png, grace_hopper.jpg, coffee.png (default data/fixtures)
  BRS_LOCUST_MIX     task weights, e.g. "raw=3,multipart=1,jobs=1" (default); jobs need brs-serve
  BRS_LOCUST_UNIQUE  1 (default): append random bytes after each image's end marker so every
                     request misses the result store and really runs the generator; 0: repeat
                     the same files (measures the cache path)
"""
import os
import random
import time

from locust import HttpUser, constant, task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.environ.get("BRS_FIXTURES", os.path.join(ROOT, "data", "fixtures"))
IMAGES = []
for name, mime in [("astronaut.png", "image/png"), ("grace_hopper.jpg", "image/jpeg"), ("coffee.png", "image/png")]:
    with open(os.path.join(FIXTURES, name), "rb") as f:
        IMAGES.append((name, mime, f.read()))
UNIQUE = os.environ.get("BRS_LOCUST_UNIQUE", "1") == "1"


def _mix():
    weights = {"raw": 3, "multipart": 1, "jobs": 1}
    spec = os.environ.get("BRS_LOCUST_MIX")
    if spec:
        weights = {k: 0 for k in weights}
        for part in spec.split(","):
            k, _, v = part.partition("=")
            if k.strip() not in weights:
                raise SystemExit(f"BRS_LOCUST_MIX: unknown task {k!r} (raw, multipart, jobs)")
            weights[k.strip()] = int(v)
    return weights


def _image():
    name, mime, data = random.choice(IMAGES)
    if UNIQUE:
        # Decoders stop at the end marker (PNG IEND, JPEG EOI); the tail only changes the hash.
        data = data + random.randbytes(16)
    return name, mime, data


def _check(resp):
    if resp.status_code == 200:
        resp.success()
    elif resp.status_code == 503:
        resp.failure("503 backpressure")
    else:
        resp.failure(f"{resp.status_code} {resp.text[:120]!r}")


def raw(user):
    _, mime, data = _image()
    with user.client.post("/v1/translate", data=data, headers={"Content-Type": mime},
                          name="/v1/translate raw", catch_response=True) as r:
        _check(r)


def multipart(user):
    name, mime, data = _image()
    with user.client.post("/v1/translate", files={"image": (name, data, mime)},
                          name="/v1/translate multipart", catch_response=True) as r:
        _check(r)


def jobs(user):
    files = []
    for _ in range(2):
        name, mime, data = _image()
        files.append(("image", (name, data, mime)))
    with user.client.post("/v1/jobs", files=files, name="/v1/jobs", catch_response=True) as r:
        if r.status_code != 202:
            _check(r)
            return
        r.success()
        job = r.json()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with user.client.get(f"/v1/jobs/{job['id']}", name="/v1/jobs/{id}", catch_response=True) as r:
            if r.status_code != 200:
                _check(r)
                return
            r.success()
            state = r.json()
        if state["status"] == "done":
            failed = [i for i in state["items"] if i["status"] != "done"]
            if failed:
                user.environment.events.request.fire(
                    request_type="JOB", name="/v1/jobs items", response_time=0, response_length=0,
                    response=None, context={},
                    exception=Exception(f"{failed[0]['error']['code']} job item failed"))
            return
        time.sleep(0.2)
    user.environment.events.request.fire(
        request_type="JOB", name="/v1/jobs items", response_time=0, response_length=0,
        response=None, context={}, exception=Exception("job not done within 120 s"))


MIX = _mix()


class TranslateUser(HttpUser):
    """One request in flight per user."""
    wait_time = constant(0)
    tasks = {f: w for f, w in [(raw, MIX["raw"]), (multipart, MIX["multipart"]), (jobs, MIX["jobs"])] if w > 0}
