"""Cost, cold starts and capacity of the Auto Scaling tier versus the Lambda variant.

Inputs: brs-serve's measured throughput and latency (the summary JSON that locust/run writes, or flags)
and public prices (docs/prices.json). Output: a markdown table and a PNG chart over several request
rates. The model is described in docs/cost.md; every constant it uses is an input with a default.

Expected summary JSON (extra keys are ignored):
  requests_per_s   saturated throughput of ONE brs-serve process, images/s     (required)
  p50_ms, p95_ms, p99_ms   latency under that load                              (required)
  measured_vcpus   vCPUs of the machine locust measured on                      (optional, default 2)
  p50_ms_single    p50 with one request in flight (the generator's own time)   (optional)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Measured:
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    measured_vcpus: float = 2.0
    p50_ms_single: float | None = None
    source: str = "flags"

    def cpu_s_per_image(self) -> float:
        """CPU-seconds one image costs; the quantity both tiers pay for."""
        if self.p50_ms_single is not None:
            # One request in flight uses every core of the measuring machine (intra-op threads).
            return self.p50_ms_single / 1000.0 * self.measured_vcpus
        return self.measured_vcpus / self.requests_per_s


@dataclass
class Prices:
    instance_type: str
    instance_vcpus: float
    instance_usd_h: float
    alb_usd_h: float
    lcu_usd_h: float
    lcu_new_conn_per_s: float
    lcu_gb_per_h: float
    lambda_usd_gb_s: float
    lambda_usd_per_m_req: float
    lambda_mb_per_vcpu: float
    lambda_max_vcpus: float
    label: str = ""

    @classmethod
    def from_json(cls, d: dict, label: str = "") -> "Prices":
        return cls(
            instance_type=d["ec2"]["instance_type"],
            instance_vcpus=float(d["ec2"]["vcpus"]),
            instance_usd_h=float(d["ec2"]["usd_per_hour"]),
            alb_usd_h=float(d["alb"]["usd_per_hour"]),
            lcu_usd_h=float(d["alb"]["usd_per_lcu_hour"]),
            lcu_new_conn_per_s=float(d["alb"]["lcu_new_connections_per_s"]),
            lcu_gb_per_h=float(d["alb"]["lcu_gb_per_hour"]),
            lambda_usd_gb_s=float(d["lambda"]["usd_per_gb_second"]),
            lambda_usd_per_m_req=float(d["lambda"]["usd_per_million_requests"]),
            lambda_mb_per_vcpu=float(d["lambda"]["mb_per_vcpu"]),
            lambda_max_vcpus=float(d["lambda"]["max_vcpus"]),
            label=label,
        )


@dataclass
class Assumptions:
    target_utilization: float = 0.7  # instances scale out before saturation (the target-tracking target)
    min_instances: int = 2  # the ASG floor: two zones
    max_instances: int = 6
    bytes_per_request: float = 400_000  # upload plus result through the ALB
    instance_scale_out_s: float = 300  # boot, EFS mount, model load, warm-up (terraform warmup_secs)
    lambda_memory_mb: float = 4096
    lambda_overhead_ms: float = 20  # lambda_http adapter, EFS result write
    lambda_init_ms: float = 8000  # cold start: image, runtime, model load from EFS, first forward
    lambda_idle_reclaim_s: float = 600  # an idle execution environment is reclaimed after about this long
    lambda_env_lifetime_s: float = 7200  # even busy environments are recycled after about this long
    lambda_concurrency_limit: int = 1000  # default account limit per region


@dataclass
class Row:
    rate: float
    asg_instances: int
    asg_usd_h: float
    asg_usd_per_1000: float
    asg_over_capacity: bool
    lambda_concurrency: float
    lambda_duration_ms: float
    lambda_cold_fraction: float
    lambda_usd_h: float
    lambda_usd_per_1000: float
    lambda_over_capacity: bool
    extra: dict = field(default_factory=dict)


def instance_capacity(m: Measured, p: Prices, a: Assumptions) -> float:
    """Images/s one instance of the priced type takes at the scaling target."""
    return p.instance_vcpus / m.cpu_s_per_image() * a.target_utilization


def alb_lcus(rate: float, p: Prices, a: Assumptions) -> float:
    """LCUs are billed on the largest dimension; for image uploads that is bytes or new connections."""
    gb_per_h = rate * 3600 * a.bytes_per_request / 1e9
    return max(gb_per_h / p.lcu_gb_per_h, rate / p.lcu_new_conn_per_s)


def lambda_vcpus(p: Prices, a: Assumptions) -> float:
    return min(a.lambda_memory_mb / p.lambda_mb_per_vcpu, p.lambda_max_vcpus)


def lambda_duration_s(m: Measured, p: Prices, a: Assumptions) -> float:
    # Same CPU-seconds per image as measured, spread over the function's vCPUs; no batching across
    # requests (one request per execution environment).
    return m.cpu_s_per_image() / lambda_vcpus(p, a) + a.lambda_overhead_ms / 1000.0


def lambda_cold_fraction(rate: float, concurrency: float, a: Assumptions) -> float:
    """Share of requests that start a new execution environment at a steady Poisson rate.

    Two sources: recycling (every environment is replaced about once per lifetime) and idle gaps (at
    low rates, a request arriving after the last environment was reclaimed).
    """
    if rate <= 0:
        return 1.0
    recycled_per_s = max(1.0, concurrency) / a.lambda_env_lifetime_s
    after_idle_per_s = rate * math.exp(-rate * a.lambda_idle_reclaim_s)
    return min(1.0, (recycled_per_s + after_idle_per_s) / rate)


def compare(rate: float, m: Measured, p: Prices, a: Assumptions) -> Row:
    cap = instance_capacity(m, p, a)
    needed = math.ceil(rate / cap - 1e-9) if rate > 0 else 0
    instances = max(a.min_instances, needed)
    asg_h = instances * p.instance_usd_h + p.alb_usd_h + alb_lcus(rate, p, a) * p.lcu_usd_h

    dur = lambda_duration_s(m, p, a)
    billed_s = math.ceil(dur * 1000 - 1e-9) / 1000.0  # Lambda bills by the millisecond
    gb = a.lambda_memory_mb / 1024.0
    concurrency = rate * dur
    cold = lambda_cold_fraction(rate, concurrency, a)
    # Container-image functions are billed for their init phase too.
    per_image = gb * (billed_s + cold * a.lambda_init_ms / 1000.0) * p.lambda_usd_gb_s + p.lambda_usd_per_m_req / 1e6
    lambda_h = per_image * rate * 3600

    images_h = rate * 3600
    return Row(
        rate=rate,
        asg_instances=instances,
        asg_usd_h=asg_h,
        asg_usd_per_1000=asg_h / images_h * 1000 if images_h else math.inf,
        asg_over_capacity=needed > a.max_instances,
        lambda_concurrency=concurrency,
        lambda_duration_ms=dur * 1000,
        lambda_cold_fraction=cold,
        lambda_usd_h=lambda_h,
        lambda_usd_per_1000=per_image * 1000,
        lambda_over_capacity=concurrency > a.lambda_concurrency_limit,
    )


def break_even(m: Measured, p: Prices, a: Assumptions, lo: float = 0.001, hi: float = 1000.0, steps: int = 2000) -> float | None:
    """Lowest rate (images/s, log grid) from which the Auto Scaling tier is cheaper per image."""
    for i in range(steps + 1):
        r = lo * (hi / lo) ** (i / steps)
        row = compare(r, m, p, a)
        if row.asg_usd_per_1000 < row.lambda_usd_per_1000:
            return r
    return None


def markdown(rows: list[Row], m: Measured, p: Prices, a: Assumptions, be: float | None) -> str:
    cap = instance_capacity(m, p, a)
    lines = [
        f"Measured: {m.requests_per_s:g} images/s saturated on {m.measured_vcpus:g} vCPUs, p50 {m.p50_ms:g} ms, "
        f"p95 {m.p95_ms:g} ms, p99 {m.p99_ms:g} ms (source: {m.source}).",
        f"Prices: {p.label}.",
        f"Auto Scaling tier: {p.instance_type} ({p.instance_vcpus:g} vCPU, ${p.instance_usd_h:g}/h), "
        f"{cap:.2f} images/s per instance at {a.target_utilization:.0%} utilisation, {a.min_instances}-{a.max_instances} instances, "
        f"scale-out takes ~{a.instance_scale_out_s:g} s; per-request latency as measured (p50 {m.p50_ms:g} ms, p95 {m.p95_ms:g} ms).",
        f"Lambda: {a.lambda_memory_mb:g} MB ({lambda_vcpus(p, a):.2f} vCPU), {lambda_duration_s(m, p, a) * 1000:.0f} ms per image warm, "
        f"cold start +{a.lambda_init_ms:g} ms, concurrency limit {a.lambda_concurrency_limit}.",
        "",
        "| images/s | ASG instances | ASG $/h | ASG $ per 1,000 | Lambda concurrency | Lambda cold starts | Lambda $/h | Lambda $ per 1,000 | cheaper |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        inst = f"{r.asg_instances}" + (" (over max)" if r.asg_over_capacity else "")
        conc = f"{r.lambda_concurrency:.1f}" + (" (over limit)" if r.lambda_over_capacity else "")
        cheaper = "ASG" if r.asg_usd_per_1000 < r.lambda_usd_per_1000 else "Lambda"
        lines.append(
            f"| {r.rate:g} | {inst} | {r.asg_usd_h:.3f} | {r.asg_usd_per_1000:.4f} | {conc} | {r.lambda_cold_fraction:.2%} "
            f"| {r.lambda_usd_h:.3f} | {r.lambda_usd_per_1000:.4f} | {cheaper} |"
        )
    lines.append("")
    lines.append(
        f"Break-even: the Auto Scaling tier is cheaper per image from about {be:.3g} images/s."
        if be is not None
        else "Break-even: none between 0.001 and 1000 images/s (Lambda is cheaper throughout)."
    )
    lines.append(
        f"Capacity: {a.max_instances} instances take {cap * a.max_instances:.1f} images/s; Lambda at its concurrency limit "
        f"takes {a.lambda_concurrency_limit / lambda_duration_s(m, p, a):.0f} images/s."
    )
    return "\n".join(lines) + "\n"


def chart(rows: list[Row], be: float | None, path: Path, m: Measured, p: Prices, a: Assumptions) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # A dense grid for the curves, the table's rates as markers.
    lo, hi = min(r.rate for r in rows), max(r.rate for r in rows)
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)] if hi > lo else [lo]
    dense = [compare(x, m, p, a) for x in grid]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.plot(grid, [d.asg_usd_per_1000 for d in dense], label=f"Auto Scaling ({p.instance_type}, min {a.min_instances})")
    ax1.plot(grid, [d.lambda_usd_per_1000 for d in dense], label=f"Lambda ({a.lambda_memory_mb:g} MB)")
    ax1.scatter([r.rate for r in rows], [r.asg_usd_per_1000 for r in rows], s=15)
    ax1.scatter([r.rate for r in rows], [r.lambda_usd_per_1000 for r in rows], s=15)
    if be is not None and lo <= be <= hi:
        ax1.axvline(be, color="grey", linestyle="--", linewidth=1, label=f"break-even {be:.3g}/s")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("request rate (images/s)")
    ax1.set_ylabel("USD per 1,000 images")
    ax1.set_title("Cost per 1,000 images")
    ax1.legend(fontsize=8)
    ax1.grid(True, which="both", alpha=0.3)

    ax2.step(grid, [d.asg_instances for d in dense], where="post", label="ASG instances")
    ax2.plot(grid, [d.lambda_concurrency for d in dense], label="Lambda concurrent environments")
    ax2.plot(grid, [100 * d.lambda_cold_fraction for d in dense], linestyle=":", label="Lambda cold starts (% of requests)")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("request rate (images/s)")
    ax2.set_title("Capacity in use and cold starts")
    ax2.legend(fontsize=8)
    ax2.grid(True, which="both", alpha=0.3)

    fig.suptitle(f"brs-serve: Auto Scaling vs Lambda ({m.source})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_measured(args: argparse.Namespace) -> Measured:
    d: dict = {}
    source = "flags"
    if args.summary:
        d = json.loads(Path(args.summary).read_text())
        source = args.label or f"locust summary {args.summary}"
    elif args.label:
        source = args.label
    for key in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms", "measured_vcpus", "p50_ms_single"):
        v = getattr(args, key)
        if v is not None:
            d[key] = v
    missing = [k for k in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms") if d.get(k) is None]
    if missing:
        raise SystemExit(f"cost-compare: missing {', '.join(missing)} (give --summary or the flags)")
    m = Measured(
        requests_per_s=float(d["requests_per_s"]),
        p50_ms=float(d["p50_ms"]),
        p95_ms=float(d["p95_ms"]),
        p99_ms=float(d["p99_ms"]),
        measured_vcpus=float(d.get("measured_vcpus") or 2.0),
        p50_ms_single=float(d["p50_ms_single"]) if d.get("p50_ms_single") is not None else None,
        source=source,
    )
    if m.requests_per_s <= 0 or m.measured_vcpus <= 0:
        raise SystemExit("cost-compare: requests_per_s and measured_vcpus must be positive")
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--summary", help="locust summary JSON (locust/run)")
    ap.add_argument("--label", help="how to name the measurement in the outputs (e.g. 'EXAMPLE inputs')")
    for key in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms", "measured_vcpus", "p50_ms_single"):
        ap.add_argument("--" + key.replace("_", "-"), dest=key, type=float, help=f"overrides {key} of the summary")
    ap.add_argument("--prices", default=str(Path(__file__).resolve().parent.parent / "docs" / "prices.json"))
    ap.add_argument("--rates", default="0.01,0.1,0.5,1,2,5,10,20,50", help="request rates, images/s, comma-separated")
    d = Assumptions()
    for name, default in vars(d).items():
        ap.add_argument("--" + name.replace("_", "-"), dest=name, type=type(default), default=default)
    ap.add_argument("--out-md", required=True, help="markdown table to write")
    ap.add_argument("--out-png", required=True, help="chart to write")
    args = ap.parse_args(argv)

    m = load_measured(args)
    prices_doc = json.loads(Path(args.prices).read_text())
    p = Prices.from_json(prices_doc, label=f"{prices_doc.get('region')} {prices_doc.get('currency')}, {prices_doc.get('as_of')}; {Path(args.prices).name}")
    a = Assumptions(**{k: getattr(args, k) for k in vars(d)})
    rates = sorted(float(x) for x in args.rates.split(",") if x.strip())
    if not rates or rates[0] <= 0:
        raise SystemExit("cost-compare: --rates must be positive numbers")

    rows = [compare(r, m, p, a) for r in rates]
    be = break_even(m, p, a)
    Path(args.out_md).write_text(markdown(rows, m, p, a, be))
    chart(rows, be, Path(args.out_png), m, p, a)
    print(f"cost-compare: wrote {args.out_md} and {args.out_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
