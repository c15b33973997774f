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

Measured: RSS idle, peak (VmHWM) during the run, and 30 s after the abusers stop; the good
clients' p50/p95 latency and failures, alone (the first --alone seconds) and beside the abusers; what the abusers got back (200/4xx/429/503...). Writes
out/bench-abuse/summary.json. Load goes to 127.0.0.0/8 only; every loop is bounded in time.

Usage: scripts/bench-abuse [--seconds 120] [--alone 20] [--out out/bench-abuse]
                          [--malloc serving|training|default]
"""

import argparse
import http.client
import json
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
                               "--set", "store.path=%s" % json.dumps(os.path.join(args.out, "results"))],
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
    t0 = time.time()
    while request("127.0.0.1", port, "GET", "/readyz", timeout=2)[0] != 200:
        if server.poll() is not None or time.time() - t0 > 180:
            sys.exit("bench-abuse: brs-serve did not become ready (see brs-serve.log)")
        time.sleep(0.2)
    time.sleep(2)
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

    def abuse(ip, kind):
        def bombs():
            for body in (big_refused, big_accepted):
                results.abused(kind, request(ip, port, "POST", "/v1/translate", body, "image/png")[0])

        def profiles():
            results.abused(kind, request(ip, port, "POST", "/v1/translate", iccp, "image/png")[0])

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

    threads = [threading.Thread(target=sample, daemon=True)]
    for i in range(2):
        threads.append(threading.Thread(target=loop_until, args=(stop, good("127.0.0.%d" % (10 + i), i, results, 1)),
                                        daemon=True))
    kinds = ["bombs", "bombs", "profiles", "jobs", "jobs", "filenames", "flood", "flood", "slow", "slow"]
    for k, kind in enumerate(kinds):
        threads.append(threading.Thread(target=loop_until,
                                        args=(stop, abuse("127.0.1.%d" % (10 + k), kind)), daemon=True))
    started = time.time()
    for t in threads:
        t.start()
    while time.time() - started < args.seconds:
        time.sleep(1)
        if server.poll() is not None:
            sys.exit("bench-abuse: brs-serve died (see brs-serve.log)")
    stop.set()
    for t in threads[1:]:
        t.join(timeout=130)
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
        "abusers": dict(sorted(results.abuse.items())),
        "rejected_by_reason": rejected,
        "targets": {"rss_peak_mib": 1536, "rss_after_minus_idle_mib": 150, "good_failures": 0},
    }
    summary["met"] = (summary["rss_peak_mib"] <= 1536 and summary["rss_after_minus_idle_mib"] <= 150
                      and failures == 0 and len(lat) > 0)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
