"""brs-serve against the Flask + PyTorch baseline (and ONNX Runtime in Python) under the same locust
load and the same weights, with the machine's sgemm ceiling.

usage: scripts/bench-serve [--secs 60] [--full] [--users-equal 2] [--users-sat 8] [--out DIR] [--no-build]
                           [--only KIND]

Servers: brs-serve as shipped (engine and precision auto: bfloat16 on CPUs with AVX512-BF16, else
float32; the engine the faster of libtorch and ONNX Runtime at load), brs-serve with each engine in
float32 (`brs-torch-f32`, `brs-onnx`: the same arithmetic as the baselines), libtorch with OpenMP's
active waiting (`brs-torch-f32-active`; the server sets passive waiting unless told otherwise), the
Flask + PyTorch baseline, and the same Flask server on ONNX Runtime (`onnxruntime`, with the model
exported by `brs-train export --format onnx`: what a user would write instead).
For each server: (1) overhead: 30 sequential requests (one in flight) timed by the client, minus
the generator's own forward time (brs-serve: mean of brs_inference_seconds over those requests;
the Python servers: the median forward pass a worker measures); (2) locust with --users-equal
users, the same load on all, for p95; (3) locust with --users-sat users, saturation, for
throughput. Every request carries unique bytes, so brs-serve's result store never answers.
The ceiling: the fastest of three float32 GEMMs of 2048^3 (MKL's, OpenBLAS's, and oneDNN's as a 1x1
convolution), best of five each, on every core and on one; a generator's GFLOP per image are counted by torch's FlopCounterMode on the
PyTorch network, so each server's throughput is also given in GFLOP/s and as a share of the
ceiling. Beside them, ONNX Runtime's own forward pass of the exported model in Python (one image,
best of five, on every core and on one), which brs's one-in-flight forward is compared with.
Writes OUT/bench.json and prints a markdown table for docs/benchmarks.md.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.environ.get("BRS_PYTHON", os.path.join(ROOT, ".venv", "bin", "python"))
# Every load-generating user is 127.0.0.1: brs-serve's per-client limits would measure themselves.
UNLIMITED_CLIENTS = ["--set", "clients.images_per_sec=100000", "--set", "clients.image_burst=100000",
                     "--set", "clients.max_concurrent=100000"]
FIXTURES = os.environ.get("BRS_FIXTURES", os.path.join(ROOT, "data", "fixtures"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ready(url, proc, limit=300):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}")
        try:
            if urllib.request.urlopen(url + "/readyz", timeout=5).status == 200:
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready after {limit} s")


def post(url, data, mime):
    req = urllib.request.Request(url + "/v1/translate", data=data, headers={"Content-Type": mime})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()
        if r.status != 200:
            raise SystemExit(f"status {r.status}")
    return time.perf_counter() - t


def metric_sum_count(url, name):
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    s = c = 0.0
    for line in text.splitlines():
        if line.startswith(name + "_sum{"):
            s += float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count{"):
            c += float(line.rsplit(" ", 1)[1])
    return s, c


def overhead(url, kind, n=30):
    with open(os.path.join(FIXTURES, "grace_hopper.jpg"), "rb") as f:
        jpg = f.read()
    for i in range(3):
        post(url, jpg + os.urandom(16), "image/jpeg")  # warm-up
    before = metric_sum_count(url, "brs_inference_seconds") if kind.startswith("brs") else None
    times = sorted(post(url, jpg + os.urandom(16), "image/jpeg") for _ in range(n))
    p50 = times[len(times) // 2]
    if kind.startswith("brs"):
        after = metric_sum_count(url, "brs_inference_seconds")
        forward = (after[0] - before[0]) / max(after[1] - before[1], 1)
    else:
        req = urllib.request.Request(url + "/forward-time?n=9", data=b"", method="POST")
        forward = json.load(urllib.request.urlopen(req, timeout=300))["seconds"]
    return {"p50_ms": round(p50 * 1000, 2), "forward_ms": round(forward * 1000, 2),
            "overhead_ms": round((p50 - forward) * 1000, 2), "requests": n}


def locust(url, users, secs, out):
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, BRS_LOCUST_MIX="raw=3,multipart=1", BRS_LOCUST_UNIQUE="1", BRS_FIXTURES=FIXTURES)
    subprocess.run([os.path.join(ROOT, "locust", "run"), "--host", url, "--users", str(users),
                    "--spawn-rate", str(users), "--time", f"{secs}s", "--out", out],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    return {k: s[k] for k in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms", "requests",
                              "failures_by_status", "backpressure_503")}


# One thread count per process (OpenBLAS reads its count at import). Three float32 GEMMs of 2048^3,
# best of five each: torch.matmul (MKL), numpy (OpenBLAS) and a 1x1 convolution as oneDNN runs
# it, channels-last (the kernels a generator's convolutions use). MKL alone is no ceiling: on AMD
# CPUs it does not pick its AVX-512 kernels, and oneDNN's convolutions out-run it.
PY_SGEMM = """
import json, time, numpy as np, torch
n = 2048
def best(f):
    f()
    return min((lambda t: (f(), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
a, b = torch.randn(n, n), torch.randn(n, n)
an, bn = a.numpy(), b.numpy()
x = torch.randn(1, n, 32, 64).contiguous(memory_format=torch.channels_last)
w = torch.randn(n, n, 1, 1).contiguous(memory_format=torch.channels_last)
flop = 2 * n ** 3
with torch.no_grad():
    out = {"mkl": best(lambda: torch.matmul(a, b)), "openblas": best(lambda: an @ bn),
           "onednn_conv": best(lambda: torch.conv2d(x, w))}
print(json.dumps({k: round(flop / t / 1e9, 1) for k, t in out.items()}))
"""

PY_FLOPS = """
import json, sys, torch
sys.path.insert(0, sys.argv[2])
import ugatit_torch
from torch.utils.flop_counter import FlopCounterMode
gen, cfg = ugatit_torch.load_brs_generator(sys.argv[1])
x = torch.zeros(1, 3, cfg["img_size"], cfg["img_size"])
with torch.no_grad(), FlopCounterMode(display=False) as counter:
    gen(x)
print(json.dumps({"gflop_per_image": round(counter.get_total_flops() / 1e9, 2)}))
"""


PY_ORT_FORWARD = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[2])
import bench_serve_flask
forward, size = bench_serve_flask._onnx_model(sys.argv[1])
x = np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
for _ in range(2):
    forward(x)
times = []
for _ in range(5):
    t = time.perf_counter()
    forward(x)
    times.append(time.perf_counter() - t)
print(json.dumps(round(1000 * min(times), 1)))
"""


def run_snippet(snippet, *args, **env):
    """Runs one of the Python snippets above in the project's Python with `env` added to the
    environment; its JSON answer."""
    done = subprocess.run([PY, "-c", snippet, *args], capture_output=True, text=True,
                          env=dict(os.environ, **env), check=True)
    return json.loads(done.stdout)


def thread_counts():
    """One thread and every core: the counts each measurement is taken at."""
    return sorted({1, os.cpu_count() or 1})


def python_onnxruntime_forward(onnx):
    """ONNX Runtime's own forward pass of the exported model in Python, one image, best of five:
    on every core (what brs-serve's one-in-flight forward is held to) and on one."""
    scripts = os.path.join(ROOT, "scripts")
    return {str(t): run_snippet(PY_ORT_FORWARD, onnx, scripts, BRS_BENCH_TORCH_THREADS=str(t))
            for t in thread_counts()}


def ceiling(model):
    """The machine's sgemm GFLOP/s (every core, one core) and the generator's GFLOP per image."""
    sgemm = {}
    for threads in thread_counts():
        by_library = run_snippet(PY_SGEMM, **{k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                                      "OPENBLAS_NUM_THREADS")})
        sgemm[str(threads)] = max(by_library.values())
        sgemm[f"{threads} by library"] = by_library
    flops = run_snippet(PY_FLOPS, model, os.path.join(ROOT, "scripts"))
    return {"sgemm_gflops": sgemm, "cpus": os.cpu_count() or 1, **flops}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=60)
    ap.add_argument("--full", action="store_true", help="full (not light) generator")
    ap.add_argument("--users-equal", type=int, default=2)
    ap.add_argument("--users-sat", type=int, default=8)
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench-serve"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--only", choices=["brs", "brs-torch-f32", "brs-onnx", "brs-onnx-lanes", "brs-onnx-batches",
                                       "brs-torch-f32-active", "onnxruntime", "flask"])
    a = ap.parse_args()
    a.out = os.path.abspath(a.out)
    os.makedirs(a.out, exist_ok=True)
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "brs-serve", "--bins", "--examples",
                        "-p", "brs-train"], cwd=ROOT, check=True)
    rel = os.path.join(ROOT, "target", "release")
    model = os.path.join(a.out, "model-full" if a.full else "model-light")
    if not os.path.exists(os.path.join(model, "latest")):
        subprocess.run([os.path.join(rel, "examples", "random_export"), model, "256", "64", "4",
                        "full" if a.full else "light"], check=True, stdout=subprocess.DEVNULL)
    onnx = model + ".onnx"
    if not os.path.exists(onnx):
        subprocess.run([os.path.join(rel, "brs-train"), "export", "--checkpoint", model, "--output", onnx,
                        "--format", "onnx"], check=True, stdout=subprocess.DEVNULL)
    results = {}
    if a.only and os.path.exists(os.path.join(a.out, "bench.json")):
        # Re-running one server keeps the other's numbers from the previous run.
        with open(os.path.join(a.out, "bench.json")) as f:
            results = json.load(f)
    results |= {"model": {"img_size": 256, "ch": 64, "n_res": 4, "light": not a.full},
               "secs": a.secs, "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "ceiling": ceiling(model), "onnxruntime_forward_ms": python_onnxruntime_forward(onnx)}
    print("ceiling", results["ceiling"], file=sys.stderr)
    print("ONNX Runtime's forward in Python, ms by threads", results["onnxruntime_forward_ms"], file=sys.stderr)

    def brs(precision, engine):
        return lambda port: [os.path.join(rel, "brs-serve"), "--model-dir", model, "--bind",
                             f"127.0.0.1:{port}", "--set", "store.path=" + os.path.join(a.out, "results"),
                             "--set", "drain_grace=0s", "--set", "queue_depth=64",
                             "--set", "precision=" + precision, "--set", "engine=" + engine] + UNLIMITED_CLIENTS

    workers = str(os.cpu_count() or 1)
    servers = {
        "brs": (brs("auto", "auto"), {}),
        "brs-torch-f32": (brs("f32", "torch"), {}),
        # ONNX Runtime as shipped (`onnx_lanes = "timed"`): an image alone on every core, waiting
        # images side by side on single-thread lanes where that was timed faster at load.
        "brs-onnx": (brs("f32", "onnx"), {}),
        # ... always side by side (nothing timed), and never (batches on every core, as before).
        "brs-onnx-lanes": (lambda port: brs("f32", "onnx")(port) + ["--set", "onnx_lanes=always"], {}),
        "brs-onnx-batches": (lambda port: brs("f32", "onnx")(port) + ["--set", "onnx_lanes=off"], {}),
        "brs-torch-f32-active": (brs("f32", "torch"), {"OMP_WAIT_POLICY": "ACTIVE"}),
        "onnxruntime": (lambda port: [PY, os.path.join(ROOT, "scripts", "bench_serve_flask.py"), onnx,
                                      "--port", str(port), "--workers", workers], {}),
        "flask": (lambda port: [PY, os.path.join(ROOT, "scripts", "bench_serve_flask.py"), model,
                                "--port", str(port), "--workers", workers], {}),
    }
    for kind, (cmd, env) in servers.items():
        if a.only and kind != a.only:
            continue
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(os.path.join(a.out, f"{kind}.log"), "w")
        proc = subprocess.Popen(cmd(port), stdout=log, stderr=log, env=dict(os.environ, **env))
        try:
            wait_ready(url, proc)
            r = {"overhead": overhead(url, kind)}
            if kind.startswith("brs"):
                models = json.load(urllib.request.urlopen(url + "/v1/models", timeout=10))
                served = models["styles"][0]["model"]
                r["precision"] = served["precision"]
                r["engine"] = served.get("engine", "torch")
                r["model"] = served
            print(kind, "overhead", r["overhead"], file=sys.stderr)
            r["equal"] = locust(url, a.users_equal, a.secs, os.path.join(a.out, f"{kind}-equal"))
            print(kind, "equal", r["equal"], file=sys.stderr)
            r["saturation"] = locust(url, a.users_sat, a.secs, os.path.join(a.out, f"{kind}-sat"))
            print(kind, "saturation", r["saturation"], file=sys.stderr)
            results[kind] = r
        finally:
            proc.terminate()
            proc.wait(timeout=120)
            log.close()
    with open(os.path.join(a.out, "bench.json"), "w") as f:
        json.dump(results, f, indent=2)
    if "flask" in results:
        fl = results["flask"]
        kinds = [k for k in servers if k != "flask" and k in results and isinstance(results[k], dict)
                 and "saturation" in results[k]]
        head = " | ".join(f"{k} ({results[k].get('engine', 'python')}, {results[k].get('precision', 'f32')})"
                          for k in kinds)
        print(f"| metric | {head} | Flask + PyTorch (f32) |")
        print("|---|" + "---|" * (len(kinds) + 1))

        def row(label, get, ratio=False):
            cells = []
            for k in kinds:
                v = get(results[k])
                cells.append(f"{v} ({v / max(get(fl), 1e-9):.2f}x)" if ratio else f"{v}")
            print(f"| {label} | " + " | ".join(cells) + f" | {get(fl)} |")

        row(f"throughput at saturation ({a.users_sat} users), req/s", lambda r: r["saturation"]["requests_per_s"], True)
        row(f"p95 at equal load ({a.users_equal} users), ms", lambda r: r["equal"]["p95_ms"])
        row(f"p50 at equal load ({a.users_equal} users), ms", lambda r: r["equal"]["p50_ms"])
        row("p50 one in flight, ms", lambda r: r["overhead"]["p50_ms"])
        row("generator forward, ms", lambda r: r["overhead"]["forward_ms"])
        row("overhead (p50 - forward), ms", lambda r: r["overhead"]["overhead_ms"])
        row("failures (saturation)", lambda r: sum(r["saturation"]["failures_by_status"].values()))
        c = results["ceiling"]
        gflop, top = c["gflop_per_image"], c["sgemm_gflops"][str(c["cpus"])]
        row(f"GFLOP/s at saturation ({gflop} GFLOP per image)",
            lambda r: round(r["saturation"]["requests_per_s"] * gflop, 1))
        row(f"share of the sgemm ceiling ({top} GFLOP/s on {c['cpus']} cores)",
            lambda r: f"{100 * r['saturation']['requests_per_s'] * gflop / top:.0f}%")
        row("one-in-flight forward, GFLOP/s", lambda r: round(gflop / (r["overhead"]["forward_ms"] / 1000), 1))
        py_ort = results["onnxruntime_forward_ms"][str(c["cpus"])]
        row(f"one-in-flight forward / ONNX Runtime's in Python on {c['cpus']} threads ({py_ort} ms)",
            lambda r: f"{r['overhead']['forward_ms'] / py_ort:.2f}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
