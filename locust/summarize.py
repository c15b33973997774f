"""Turns locust's --csv output into summary JSON and a PNG chart.

usage: summarize.py CSV_PREFIX SUMMARY_JSON CHART_PNG

Summary keys: requests_per_s (successful requests per second), p50_ms, p95_ms, p99_ms (all
requests of the Aggregated row, as locust reports them), requests, failures, failures_by_status
({"503": n, "500": n, "connection": n, ...}), backpressure_503 (the 503s, also inside
failures_by_status), duration_s, and the same per request name under "by_name".
"""
import csv
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _row_summary(row):
    n = int(row["Request Count"])
    fails = int(row["Failure Count"])
    rps_all = _num(row["Requests/s"]) or 0.0
    duration = n / rps_all if rps_all > 0 else 0.0
    return {
        "requests": n,
        "failures": fails,
        "duration_s": round(duration, 2),
        "requests_per_s": round((n - fails) / duration, 4) if duration > 0 else 0.0,
        "p50_ms": _num(row["50%"]),
        "p95_ms": _num(row["95%"]),
        "p99_ms": _num(row["99%"]),
        "mean_ms": _num(row["Average Response Time"]),
    }


def _status_of(error):
    m = re.match(r"\s*(\d{3})\b", error)
    if m:
        return m.group(1)
    if "job item failed" in error:
        return "job_item"
    return "connection"


def summarize(prefix):
    with open(prefix + "_stats.csv") as f:
        rows = list(csv.DictReader(f))
    agg = next((r for r in rows if r["Name"] == "Aggregated"), None)
    if agg is None:
        raise SystemExit(f"{prefix}_stats.csv has no Aggregated row: did locust run?")
    out = _row_summary(agg)
    out["by_name"] = {r["Name"]: _row_summary(r) for r in rows if r["Name"] != "Aggregated"}
    by_status = {}
    failures_csv = prefix + "_failures.csv"
    if os.path.exists(failures_csv):
        with open(failures_csv) as f:
            for r in csv.DictReader(f):
                # locust wraps custom failure messages as CatchResponseError('...').
                msg = re.sub(r"^\w+\((['\"])(.*)\1\)$", r"\2", r["Error"])
                k = _status_of(msg)
                by_status[k] = by_status.get(k, 0) + int(r["Occurrences"])
    out["failures_by_status"] = by_status
    out["backpressure_503"] = by_status.get("503", 0)
    return out


def chart(prefix, path, title):
    hist = prefix + "_stats_history.csv"
    t, users, rps, p50, p95 = [], [], [], [], []
    if os.path.exists(hist):
        with open(hist) as f:
            rows = [r for r in csv.DictReader(f) if r["Name"] == "Aggregated"]
        if rows:
            t0 = int(rows[0]["Timestamp"])
            for r in rows:
                t.append(int(r["Timestamp"]) - t0)
                users.append(_num(r["User Count"]) or 0)
                rps.append(_num(r["Requests/s"]) or 0)
                p50.append(_num(r["50%"]))
                p95.append(_num(r["95%"]))
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    a.plot(t, rps, label="requests/s")
    a2 = a.twinx()
    a2.step(t, users, color="grey", where="post", label="users")
    a.set_ylabel("requests/s")
    a2.set_ylabel("users")
    a.set_title(title)
    b.plot(t, [v if v is not None else float("nan") for v in p50], label="p50")
    b.plot(t, [v if v is not None else float("nan") for v in p95], label="p95")
    b.set_ylabel("latency (ms)")
    b.set_xlabel("seconds")
    b.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    prefix, out_json, out_png = sys.argv[1:]
    s = summarize(prefix)
    tmp = out_json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(s, f, indent=2, sort_keys=True)
    os.replace(tmp, out_json)
    chart(prefix, out_png, os.path.basename(prefix))
    print(json.dumps({k: s[k] for k in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms",
                                          "failures_by_status", "backpressure_503")}))


if __name__ == "__main__":
    main()
