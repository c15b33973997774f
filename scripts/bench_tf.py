"""brs-serve against TensorFlow on the same TensorFlow U-GAT-IT weights: the full generator at
256 px, the shape of the authors' released selfie2anime checkpoints.

usage: scripts/bench-tf [--requests 20] [--ch 64] [--img 256] [--out DIR] [--no-build] [--profile release|debug]

1. Writes random weights of the official TensorFlow graph with brs-model/tests/tf_ugatit.py (our
   port, official variable names; the release itself cannot be downloaded here) and imports
   them with `brs-train import-tf`, timing the import.
2. TensorFlow: a child process builds the official test graph for A->B (generator_B), restores
   the checkpoint as the official test() does, and times --requests forward passes on distinct
   inputs after two warm-up passes, on every core; its peak RSS is the child's ru_maxrss.
   The same child translates one 256 px PNG; `brs-train translate --precision f32` translates it
   too, and the largest difference between the two PNGs is reported (the full-size parity check;
   the tests check parity at small sizes).
3. brs-serve with --model-dir on the imported run: as shipped (precision and engine auto), each
   engine in f32, and libtorch in bf16 where the CPU has AVX512-BF16: --requests sequential
   requests (one in flight) after three warm-ups; forward time from brs_inference_seconds,
   images/s from the client's clock, peak RSS from the server's VmHWM (loading and auto's timing
   included).

Writes OUT/bench.json and prints a markdown table for docs/benchmarks.md.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_serve import FIXTURES, PY, UNLIMITED_CLIENTS, free_port, metric_sum_count, post, wait_ready  # noqa: E402

PORT_SCRIPT = os.path.join(ROOT, "brs-model", "tests", "tf_ugatit.py")


def tf_forward(prefix, ch, img, requests, png_in, png_out):
    """In a child process: TensorFlow's own forward time and peak RSS, and its translation of
    png_in written to png_out."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, os.path.dirname(PORT_SCRIPT))
    import numpy as np
    import tensorflow as tf
    import tf_ugatit

    v1 = tf.compat.v1
    v1.disable_eager_execution()
    model = tf_ugatit.UGATIT(ch, False, 4, 6, True, 1)
    x = v1.placeholder(tf.float32, [1, img, img, 3])
    out, _ = model.generate_a2b(x)
    cores = os.cpu_count() or 1
    config = v1.ConfigProto(intra_op_parallelism_threads=cores, inter_op_parallelism_threads=cores)
    rng = np.random.default_rng(0)
    with v1.Session(config=config) as sess:
        v1.train.Saver().restore(sess, prefix)
        inputs = [rng.uniform(-1, 1, (1, img, img, 3)).astype(np.float32) for _ in range(requests + 2)]
        from PIL import Image
        photo = np.asarray(Image.open(png_in).convert("RGB"), dtype=np.float32)[None] / 127.5 - 1
        drawn = sess.run(out, {x: photo})[0]
        Image.fromarray(np.clip((drawn + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)).save(png_out)
        for warm in inputs[:2]:
            sess.run(out, {x: warm})
        start = time.perf_counter()
        for batch in inputs[2:]:
            sess.run(out, {x: batch})
        elapsed = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"forward_ms": round(elapsed / requests * 1000, 1),
                      "images_per_s": round(requests / elapsed, 3), "peak_rss_mib": round(rss),
                      "threads": cores, "tensorflow": tf.__version__}))


def vm_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return None


def brs_serve(rel, run, out, precision, engine, requests):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [os.path.join(rel, "brs-serve"), "--model-dir", run, "--bind", f"127.0.0.1:{port}",
           "--set", "store.path=" + os.path.join(out, "results-" + precision),
           "--set", "drain_grace=0s", "--set", "precision=" + precision,
           "--set", "engine=" + engine] + UNLIMITED_CLIENTS
    with open(os.path.join(out, f"brs-{precision}-{engine}.log"), "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        try:
            wait_ready(url, proc, limit=600)
            with open(os.path.join(FIXTURES, "grace_hopper.jpg"), "rb") as f:
                jpg = f.read()
            for _ in range(3):
                post(url, jpg + os.urandom(16), "image/jpeg")
            before = metric_sum_count(url, "brs_inference_seconds")
            start = time.perf_counter()
            for _ in range(requests):
                post(url, jpg + os.urandom(16), "image/jpeg")
            elapsed = time.perf_counter() - start
            after = metric_sum_count(url, "brs_inference_seconds")
            models = json.load(urllib.request.urlopen(url + "/v1/models", timeout=10))
            return {"forward_ms": round((after[0] - before[0]) / max(after[1] - before[1], 1) * 1000, 1),
                    "images_per_s": round(requests / elapsed, 3), "peak_rss_mib": vm_hwm_mib(proc.pid),
                    "precision": models["styles"][0]["model"]["precision"],
                    "engine": models["styles"][0]["model"].get("engine", "torch")}
        finally:
            proc.terminate()
            proc.wait(timeout=120)


def cpu_has_bf16():
    with open("/proc/cpuinfo") as f:
        return "avx512_bf16" in f.read()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "tf-forward":
        prefix, ch, img, requests = sys.argv[2], *map(int, sys.argv[3:6])
        tf_forward(prefix, ch, img, requests, sys.argv[6], sys.argv[7])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--ch", type=int, default=64)
    ap.add_argument("--img", type=int, default=256)
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench-tf"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--profile", choices=["release", "debug"], default="release",
                    help="debug: a quick check of this script, not a measurement")
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    if not a.no_build:
        release = ["--release"] if a.profile == "release" else []
        subprocess.run(["cargo", "build", *release, "-q", "-p", "brs-serve", "-p", "brs-train"],
                       cwd=ROOT, check=True)
    rel = os.path.join(ROOT, "target", a.profile)
    port = os.path.join(out, f"port-{a.ch}-{a.img}")
    if not os.path.exists(os.path.join(port, "parity.json")):
        subprocess.run([PY, PORT_SCRIPT, "forward", "--ch", str(a.ch), "--img", str(a.img),
                        "--batch", "1", "--out", port], check=True, stderr=subprocess.DEVNULL)
    with open(os.path.join(port, "parity.json")) as f:
        prefix = os.path.join(port, json.load(f)["checkpoint_prefix"])
    run = os.path.join(out, f"run-{a.ch}-{a.img}")
    subprocess.run(["rm", "-rf", run], check=True)
    start = time.perf_counter()
    imported = subprocess.run([os.path.join(rel, "brs-train"), "import-tf", "--input",
                               os.path.join(port, "checkpoint"), "--output", run],
                              check=True, capture_output=True, text=True).stdout
    results = {"import_s": round(time.perf_counter() - start, 1), "import_output": imported,
               "checkpoint_bytes": sum(os.path.getsize(os.path.join(os.path.dirname(prefix), n))
                                       for n in os.listdir(os.path.dirname(prefix))),
               "model": {"img_size": a.img, "ch": a.ch, "n_res": 4, "light": False},
               "requests": a.requests, "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(imported, file=sys.stderr)
    photo, tf_png = os.path.join(out, "photo.png"), os.path.join(out, "tensorflow.png")
    from PIL import Image
    Image.open(os.path.join(FIXTURES, "grace_hopper.jpg")).convert("RGB").resize((a.img, a.img)).save(photo)
    tf = subprocess.run([PY, os.path.abspath(__file__), "tf-forward", prefix, str(a.ch), str(a.img),
                         str(a.requests), photo, tf_png], check=True, capture_output=True, text=True)
    results["tensorflow"] = json.loads(tf.stdout.strip().splitlines()[-1])
    print("tensorflow", results["tensorflow"], file=sys.stderr)
    drawn = os.path.join(out, "brs")
    subprocess.run([os.path.join(rel, "brs-train"), "translate", "--checkpoint", run, "--input", photo,
                    "--output", drawn, "--precision", "f32", "--device", "cpu"], check=True,
                   capture_output=True)
    import numpy as np
    ours = np.asarray(Image.open(os.path.join(drawn, "photo.png")), dtype=np.int16)
    theirs = np.asarray(Image.open(tf_png), dtype=np.int16)
    results["max_grey_levels_vs_tensorflow"] = int(np.abs(ours - theirs).max())
    # brs-serve as shipped (precision and engine auto), then each engine in f32 and libtorch in
    # bf16 where the CPU has it (ONNX Runtime runs float32 only).
    runs = [("auto", "auto"), ("f32", "torch"), ("f32", "onnx")] + ([("bf16", "torch")] if cpu_has_bf16() else [])
    for precision, engine in runs:
        kind = f"brs {precision} {engine}"
        results[kind] = brs_serve(rel, run, out, precision, engine, a.requests)
        print(kind, results[kind], file=sys.stderr)
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump(results, f, indent=2)
    tf = results["tensorflow"]
    # Forward passes per second compare the engines; brs-serve's images/s from the client's clock
    # also pays for HTTP, decoding, resizing and encoding the PNG.
    print("| engine | forward, ms | forward passes/s (vs TensorFlow) | images/s end to end (vs TensorFlow) "
          "| peak RSS, MiB |")
    print("|---|---|---|---|---|")
    for kind in ["tensorflow"] + [k for k in results if k.startswith("brs ")]:
        r = results[kind]
        label = kind if kind == "tensorflow" else f"{kind} (ran: {r['engine']} {r['precision']})"
        print(f"| {label} | {r['forward_ms']} | {1000 / r['forward_ms']:.3f} ({tf['forward_ms'] / r['forward_ms']:.2f}x) "
              f"| {r['images_per_s']} ({r['images_per_s'] / tf['images_per_s']:.2f}x) | {r['peak_rss_mib']} |")
    print(f"import-tf: {results['import_s']} s for {results['checkpoint_bytes'] / 2**30:.2f} GiB; "
          f"brs-train translate vs TensorFlow on one photo: max {results['max_grey_levels_vs_tensorflow']} "
          "grey levels")


if __name__ == "__main__":
    main()
