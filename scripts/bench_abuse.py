"""brs-serve under abuse: good clients and abusive ones at once, on loopback, for a bounded time.

The server runs as shipped (release build, default config) on a light 256 px generator (ch 64,
n_res 4, random weights: speed and memory do not depend on what the weights learned). Every client
has its own loopback address (127.0.0.X), so the server tells them apart as it would tell apart
users on the internet. At the same time:

- good clients (2): real photos, one request after another, each answer checked;
- pixel bombs: 16-bit RGBA PNGs whose headers say 6320x6320 (refused) and 4000x4000 (accepted);
- colour-profile bombs: 8x8 PNGs whose iCCP chunk inflates to 400 MB;
- a job flood: 16-image jobs, back to back;
- giant multipart filenames: 16 parts with 1 MiB filenames;
- slow sockets: half-sent headers, and bodies that promise a megabyte and send ten bytes;
- a request flood: small images as fast as one client can send them.

Measured: RSS idle (once the server has given back its start-up memory), peak (VmHWM) during the run, and 30 s after the abusers stop; the good
clients' p50/p95 latency and failures, alone (the first --alone seconds) and beside the abusers;
what the abusers got back (200/4xx/429/503...). Writes out/bench-abuse/summary.json. Load goes to
127.0.0.0/8 only; every loop is bounded in time.

Where the load runs: on the internet, abusers run on their own machines, not on the server's
cores. Here they share the machine, so they run in a process of their own, at a lower priority
(--abusers-nice, default 19) and optionally pinned (--abusers-cpus, e.g. 1): they get what the
server leaves idle, so what is measured is the server's scheduling, not a fight for the CPU with
its load generator. The good clients, which time the requests, run in this process at the
server's priority (one request at a time each, little CPU), so no abuser thread holds the Python
lock while a good client's answer waits to be timed. --abusers-nice 0 gives the old arrangement's
priorities (everything shares the cores equally).

Usage: scripts/bench-abuse [--seconds 120] [--alone 20] [--out out/bench-abuse]
                          [--malloc serving|training|default] [--bin PATH]
                          [--abusers-nice 19] [--abusers-cpus 1] [--set KEY=VALUE]...
"""

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def flat_png16(w, h):
    """A 16-bit RGBA PNG of zeros: small on the wire, w*h*8 bytes decoded whole."""
    z = zlib.compressobj(6)
    row = b"\0" + bytes(w * 8)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def iccp_bomb(inflated):
    z = zlib.compressobj(9)
    block = bytes(1 << 20)
    profile = b"".join(z.compress(block) for _ in range(inflated >> 20)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\0" + bytes([128]) * 24 for _ in range(8)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"iCCP", b"bomb\0\0" + profile)
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def small_png(tag):
    ihdr = struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0)
    rows = b"".join(b"\0" + bytes([(tag + y) % 256]) * 96 for y in range(32))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def multipart(parts):
    boundary = "brsbench%d" % time.monotonic_ns()
    out = []
    for name, filename, body in parts:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                    "Content-Type: image/png\r\n\r\n" % (boundary, name, filename)).encode())
        out.append(body)
        out.append(b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary


def request(ip, port, method, path, body=None, ctype=None, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(ip, 0))
    try:
        headers = {"content-type": ctype} if ctype else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, data
    except (OSError, http.client.HTTPException) as e:
        return "error:%s" % type(e).__name__, b""
    finally:
        conn.close()


def rss_kib(pid, field="VmRSS"):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def histogram_totals(port):
    """Sum and count of the batcher's histograms (all styles and lanes), from /metrics."""
    text = request("127.0.0.1", port, "GET", "/metrics")[1].decode(errors="replace")
    totals = {}
    for line in text.splitlines():
        for name in ("brs_inference_seconds", "brs_queue_wait_seconds", "brs_batch_size"):
            for part in ("_sum", "_count"):
                if line.startswith(name + part):
                    key = name + part
                    totals[key] = totals.get(key, 0.0) + float(line.split()[-1])
    return totals


def where_time_went(before, after):
    """Mean forward pass, mean wait in the batcher and mean batch size between two scrapes."""
    def mean(name):
        n = after.get(name + "_count", 0) - before.get(name + "_count", 0)
        return (after.get(name + "_sum", 0) - before.get(name + "_sum", 0)) / n if n else None
    forward, wait, size = mean("brs_inference_seconds"), mean("brs_queue_wait_seconds"), mean("brs_batch_size")
    return {"forward_pass_ms": round(1000 * forward, 1) if forward else None,
            "batcher_wait_ms": round(1000 * wait, 1) if wait is not None else None,
            "batch_size": round(size, 2) if size else None,
            "batches": int(after.get("brs_batch_size_count", 0) - before.get("brs_batch_size_count", 0))}


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.good = []  # (seconds, ok)
        self.abuse = Counter()

    def good_one(self, seconds, ok):
        with self.lock:
            self.good.append((seconds, ok))

    def abused(self, kind, status):
        with self.lock:
            self.abuse["%s %s" % (kind, status)] += 1


def loop_until(stop, f):
    while not stop.is_set():
        f()


ABUSER_KINDS = ["bombs", "bombs", "profiles", "jobs", "jobs", "filenames", "flood", "flood", "slow", "slow"]


def abusers_main(port, bodies, stop, out, nice, cpus):
    """The abusive clients, in a process of their own (see the module docs): one thread per
    client, each on its own 127.0.1.X address; their counts go back through `out`."""
    if nice:
        os.nice(nice)
    if cpus:
        os.sched_setaffinity(0, cpus)
    results = Results()
    local_stop = threading.Event()

    def abuse(ip, kind):
        def bombs():
            for body in (bodies["big_refused"], bodies["big_accepted"]):
                results.abused(kind, request(ip, port, "POST", "/v1/translate", body, "image/png")[0])

        def profiles():
            results.abused(kind, request(ip, port, "POST", "/v1/translate", bodies["iccp"], "image/png")[0])

        def jobs():
            body, ctype = multipart([("image", "%d.png" % k, small_png(k + int(time.time())))
                                     for k in range(16)])
            results.abused(kind, request(ip, port, "POST", "/v1/jobs", body, ctype)[0])

        def filenames():
            body, ctype = multipart([("image", "x" * (1 << 20), b"\x89PNG") for _ in range(16)])
            results.abused(kind, request(ip, port, "POST", "/v1/jobs", body, ctype)[0])

        def flood():
            results.abused(kind, request(ip, port, "POST", "/v1/translate",
                                         small_png(int(time.time() * 1000)), "image/png")[0])

        def slow():
            socks = []
            for half in (b"POST /v1/translate HTTP/1.1\r\nHost: x\r\n",
                         b"POST /v1/translate HTTP/1.1\r\nHost: x\r\ncontent-type: image/png\r\n"
                         b"content-length: 1000000\r\n\r\n0123456789"):
                s = socket.socket()
                s.bind((ip, 0))
                s.settimeout(60)
                try:
                    s.connect(("127.0.0.1", port))
                    s.sendall(half)
                    socks.append(s)
                except OSError:
                    s.close()
            for s in socks:
                try:
                    data = s.recv(200)
                    results.abused(kind, data.split(b" ")[1].decode() if data else "closed")
                except OSError as e:
                    results.abused(kind, "error:%s" % type(e).__name__)
                finally:
                    s.close()
        return {"bombs": bombs, "profiles": profiles, "jobs": jobs, "filenames": filenames,
                "flood": flood, "slow": slow}[kind]

    threads = [threading.Thread(target=loop_until, args=(local_stop, abuse("127.0.1.%d" % (10 + k), kind)),
                                daemon=True) for k, kind in enumerate(ABUSER_KINDS)]
    for t in threads:
        t.start()
    stop.wait()
    local_stop.set()
    for t in threads:
        t.join(timeout=130)
    out.put(dict(results.abuse))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0, help="how long the abusers run")
    ap.add_argument("--after", type=float, default=30.0, help="quiet seconds before the last RSS reading")
    ap.add_argument("--alone", type=float, default=20.0,
                    help="seconds the good clients run alone first (their latency without abusers)")
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "bench-abuse"))
    ap.add_argument("--malloc", default="serving", choices=["serving", "training", "default"],
                    help="the server's malloc settings (brs-model's alloc profiles)")
    ap.add_argument("--bin", help="a brs-serve binary (default: cargo build --release)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a brs-serve config key for the run (repeatable), as brs-serve --set takes it")
    ap.add_argument("--abusers-nice", type=int, default=19,
                    help="niceness of the abusers' process (the server and the good clients run at 0)")
    ap.add_argument("--abusers-cpus", default="",
                    help="CPUs the abusers' process is pinned to, comma-separated (default: any)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    if not args.bin:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "brs-serve", "--bins", "--examples"],
                       cwd=ROOT, check=True)
    binary = args.bin or os.path.join(ROOT, "target", "release", "brs-serve")
    export = os.path.join(ROOT, "target", "release", "examples", "random_export")
    model = os.path.join(args.out, "model")
    if not os.path.exists(os.path.join(model, "latest")):
        subprocess.run([export, model, "256", "64", "4", "light"], check=True, stdout=subprocess.DEVNULL)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, BRS_MALLOC=args.malloc, RUST_LOG="warn")
    log = open(os.path.join(args.out, "brs-serve.log"), "w")
    server = subprocess.Popen([binary, "--model-dir", model, "--bind", "127.0.0.1:%d" % port,
                               "--set", "store.path=%s" % json.dumps(os.path.join(args.out, "results"))]
                              + [a for kv in args.set for a in ("--set", kv)],
                              env=env, stderr=log)
    try:
        return run(args, server, port)
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def run(args, server, port):
    load_at_start = os.getloadavg()[0]
    t0 = time.time()
    while request("127.0.0.1", port, "GET", "/readyz", timeout=2)[0] != 200:
        if server.poll() is not None or time.time() - t0 > 180:
            sys.exit("bench-abuse: brs-serve did not become ready (see brs-serve.log)")
        time.sleep(0.2)
    # Idle means after the server's first idle spell, when it gives back what loading and
    # warming up freed (brs_memory_releases_total counts those releases).
    while b"brs_memory_releases_total" not in request("127.0.0.1", port, "GET", "/metrics")[1]:
        if time.time() - t0 > 180:
            sys.exit("bench-abuse: brs-serve never released memory while idle (brs_memory_releases_total)")
        time.sleep(0.5)
    idle = rss_kib(server.pid)

    fixtures = os.path.join(ROOT, "data", "fixtures")
    photos = [open(os.path.join(fixtures, n), "rb").read() for n in ("astronaut.png", "grace_hopper.jpg")]
    big_refused = flat_png16(6320, 6320)
    big_accepted = flat_png16(4000, 4000)
    iccp = iccp_bomb(400 << 20)
    results = Results()
    stop = threading.Event()
    peak = [0]

    def sample():
        while not stop.is_set():
            v = rss_kib(server.pid, "VmHWM")
            if v:
                peak[0] = max(peak[0], v)
            time.sleep(0.1)

    def good(ip, i, into, phase):
        n = [0]

        def one():
            n[0] += 1
            # Unique bytes, so the result store never answers a good client.
            photo = photos[(i + n[0]) % len(photos)] + n[0].to_bytes(4, "big") + bytes([i, phase])
            ctype = "image/png" if photo.startswith(b"\x89PNG") else "image/jpeg"
            t = time.monotonic()
            status, body = request(ip, port, "POST", "/v1/translate", photo, ctype)
            ok = status == 200 and body.startswith(b"\x89PNG")
            into.good_one(time.monotonic() - t, ok)
        return one

    # The good clients alone first: their latency without abusers, to compare with.
    scrape_start = histogram_totals(port)
    alone = Results()
    quiet = threading.Event()
    alone_threads = [threading.Thread(target=loop_until, args=(quiet, good("127.0.0.%d" % (10 + i), i, alone, 0)),
                                      daemon=True) for i in range(2)]
    for t in alone_threads:
        t.start()
    time.sleep(args.alone)
    quiet.set()
    for t in alone_threads:
        t.join(timeout=130)
    scrape_alone = histogram_totals(port)

    threads = [threading.Thread(target=sample, daemon=True)]
    for i in range(2):
        threads.append(threading.Thread(target=loop_until, args=(stop, good("127.0.0.%d" % (10 + i), i, results, 1)),
                                        daemon=True))
    bodies = {"big_refused": big_refused, "big_accepted": big_accepted, "iccp": iccp}
    cpus = [int(c) for c in args.abusers_cpus.split(",") if c.strip()]
    # fork: the child starts with no thread running, and with the bombs already built.
    ctx = multiprocessing.get_context("fork")
    abusers_stop = ctx.Event()
    abusers_out = ctx.Queue()
    abusers = ctx.Process(target=abusers_main,
                          args=(port, bodies, abusers_stop, abusers_out, args.abusers_nice, cpus), daemon=True)
    started = time.time()
    abusers.start()
    for t in threads:
        t.start()
    while time.time() - started < args.seconds:
        time.sleep(1)
        if server.poll() is not None:
            abusers.kill()
            sys.exit("bench-abuse: brs-serve died (see brs-serve.log)")
    stop.set()
    abusers_stop.set()
    for t in threads[1:]:
        t.join(timeout=130)
    try:
        results.abuse.update(abusers_out.get(timeout=200))
    except Exception:  # noqa: BLE001 - a lost count must not lose the rest of the run
        results.abuse["abusers' counts lost"] += 1
    abusers.join(timeout=10)
    scrape_beside = histogram_totals(port)
    end_peak = rss_kib(server.pid, "VmHWM")
    time.sleep(args.after)
    after = rss_kib(server.pid)

    lat = sorted(s for s, _ in results.good)
    failures = sum(1 for _, ok in results.good if not ok)
    lat_alone = sorted(s for s, _ in alone.good)

    def pct(values, q):
        return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1) if values else None
    metrics = request("127.0.0.1", port, "GET", "/metrics")[1].decode(errors="replace")
    rejected = {l.split("{")[1].split("}")[0]: float(l.split()[-1])
                for l in metrics.splitlines() if l.startswith("brs_rejected_requests_total{")}
    flags = open("/proc/cpuinfo").read()
    summary = {
        "machine": {"cpus": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags, "avx2": "avx2" in flags,
                    "kernel": platform.release()},
        "malloc": args.malloc,
        "load_average_at_start": load_at_start,
        "abusers_nice": args.abusers_nice,
        "abusers_cpus": args.abusers_cpus or "any",
        "server_set": args.set,
        "seconds": args.seconds,
        "rss_idle_mib": round(idle / 1024, 1),
        "rss_peak_mib": round(max(peak[0], end_peak or 0) / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "rss_after_minus_idle_mib": round((after - idle) / 1024, 1),
        "good_requests": len(lat),
        "good_failures": failures,
        "good_p50_ms": pct(lat, 0.5),
        "good_p95_ms": pct(lat, 0.95),
        "good_alone_requests": len(lat_alone),
        "good_alone_failures": sum(1 for _, ok in alone.good if not ok),
        "good_alone_p50_ms": pct(lat_alone, 0.5),
        "good_alone_p95_ms": pct(lat_alone, 0.95),
        "batcher_alone": where_time_went(scrape_start, scrape_alone),
        "batcher_beside": where_time_went(scrape_alone, scrape_beside),
        "abusers": dict(sorted(results.abuse.items())),
        "rejected_by_reason": rejected,
        # The engine and precision served (`engine = "auto"` chooses at load, by timing).
        "engine": [l.split("{")[1].split("}")[0] for l in metrics.splitlines()
                   if l.startswith("brs_model_info{") and l.split()[-1] == "1"],
        "client_bans": sum(float(l.split()[-1]) for l in metrics.splitlines()
                           if l.startswith("brs_client_bans_total")),
        "targets": {"rss_peak_mib": 1536, "rss_after_minus_idle_mib": 150, "good_failures": 0,
                    "good_p50_over_alone": 2.0},
    }
    ratio = (summary["good_p50_ms"] / summary["good_alone_p50_ms"]
             if summary["good_p50_ms"] and summary["good_alone_p50_ms"] else None)
    summary["good_p50_over_alone"] = round(ratio, 2) if ratio else None
    summary["met"] = (summary["rss_peak_mib"] <= 1536 and summary["rss_after_minus_idle_mib"] <= 150
                      and failures == 0 and len(lat) > 0 and ratio is not None and ratio <= 2.0)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
