"""Which training settings learn an unpaired mapping best in a short run, measured over seeds.

For every mapping (a known rendering of photos: brs-dataset's cartoon, warm, tone, blur), one
unpaired set is made from the photos scripts/setup takes out of installed packages (two photos held
out for the test pairs); every setting is trained with several seeds on it, and each run is scored
by `brs-train evaluate` on the held-out pairs: the translation's mean L1 error against the true
rendering divided by the identity's (lower is better; 1 is no better than copying the photo).
The table gives the mean and the spread (sample standard deviation) per setting and mapping, and
per setting over all mappings.

Runs go two at a time with one libtorch thread each (on 2 shared cores that is faster overall
than one run with two threads: OpenMP's barriers stall when the cores are busy). Results are
appended to OUT/results.jsonl as each run ends, and runs already there are not run again, so an
interrupted harness resumes. A run whose losses became non-finite is a result: the table counts
such divergences per setting (a setting that diverges is not safe to hand users), and they are not
run again. A run that fails otherwise is recorded with its error and left out of the table.

Each run's data set is made at its own config's img_size, so settings may compare image sizes.

Every setting starts from --base (the demo's config: its model sizes are what the choice is for)
and overrides some of its keys. A run is identified by the config it trains with, so a result is
reused exactly when the same config would be trained again.

With --minutes, every run trains to that time budget instead (brs-train --max-minutes, as the demo
does), so settings that cost more per iteration are compared at equal wall time: what the demo,
which has minutes rather than iterations, needs to know. Results then also give the iterations
each run reached.

usage: learn_harness.py --bin DIR --photos DIR --out DIR --base CONFIG.toml
       [--setting NAME=KEY=VALUE;KEY=VALUE]... [--mappings cartoon,warm,tone,blur] [--seeds 7,11,12]
       [--iterations 400 | --minutes 3.5] [--jobs 2] [--report]
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import tomllib

# Not a config key: a run's time budget (passed to brs-train as --max-minutes) and how the cores
# were shared, which decides how far a run gets in that time; part of a run's identity.
BUDGET = "budget"

# Keys that change what is written, not what is learned: set for the harness, left out of a run's
# identity (so results stay valid when only these differ).
QUIET = {"print_freq": 100000, "save_freq": 100000, "log_freq": 50, "keep_last": 1, "sample_count": 1,
         "device": "cpu"}
HOLDOUT = ["chelsea.png", "coffee.png"]


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def parse_value(text):
    """A --setting value as TOML would read it (1e-4 a float, true a bool, "x" a string)."""
    return tomllib.loads(f"v = {text}")["v"]


def parse_setting(text):
    name, _, body = text.partition("=")
    if not name or not body:
        sys.exit(f"--setting {text!r}: expected NAME=KEY=VALUE;KEY=VALUE")
    pairs = [kv.split("=", 1) for kv in body.split(";") if kv]
    if any(len(kv) != 2 for kv in pairs):
        sys.exit(f"--setting {text!r}: every part must be KEY=VALUE")
    try:
        return name, {k: parse_value(v) for k, v in pairs}
    except tomllib.TOMLDecodeError as e:
        sys.exit(f"--setting {text!r}: {e}")


def dataset(args, mapping, size):
    root = os.path.join(args.out, "data", f"{mapping}-{size}")
    cmd = [
        os.path.join(args.bin, "brs-dataset"), "photoset", "--input", args.photos, "--output", root,
        "--mapping", mapping, "--count", str(args.count), "--test-count", "4",
        "--size", str(size), "--seed", "0",
    ]
    for h in HOLDOUT:
        cmd += ["--holdout", h]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return root


def resolved(base, overrides, args, seed):
    """What a run trains with: the base config, the setting's keys, the run's length and seed (with
    a time budget, the iteration count stays the setting's: brs-train decays the learning rate over
    the second half of the minutes unless that count ends the run first)."""
    if args.minutes is not None:
        # "decay" tells these runs from those of brs-train before 2026-12-03, whose time-budgeted
        # runs never decayed, so that their results are not reused.
        budget = {"minutes": args.minutes, "jobs": args.jobs, "threads": args.threads,
                  "decay": "second half of the minutes"}
        return dict(base, **overrides, seed=seed, **{BUDGET: budget})
    return dict(base, **overrides, iteration=args.iterations, seed=seed)


def identity(config):
    """What makes two runs the same run: every key that affects learning, as sorted JSON. Numbers
    are compared as numbers: `cam_weight=10` on the command line and `cam_weight = 10.0` in a
    config train the same run."""
    def number(v):
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v
    return json.dumps({k: number(v) for k, v in config.items() if k not in QUIET and k != "threads"},
                      sort_keys=True)


def stored_identity(result):
    """A stored result's run identity, recomputed, so results written before a change of form match."""
    return identity(json.loads(result["config"]))


def train_and_score(args, setting, config, mapping, data):
    run_dir = os.path.join(args.out, "runs", f"{setting}-{mapping}-{config['seed']}")
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg_path = run_dir + ".toml"
    os.makedirs(os.path.dirname(cfg_path), exist_ok=True)
    keys = {k: v for k, v in config.items() if k != BUDGET}
    with open(cfg_path, "w") as f:
        f.writelines(f"{k} = {toml_value(v)}\n" for k, v in dict(keys, **QUIET, threads=args.threads).items())
    cmd = [os.path.join(args.bin, "brs-train"), "train", "--config", cfg_path, "--data", data, "--out", run_dir]
    if BUDGET in config:
        cmd += ["--max-minutes", str(config[BUDGET]["minutes"])]
    started = time.monotonic()
    train = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if train.returncode != 0:
        diverged = re.search(r"non-finite at iteration (\d+)", train.stderr)
        if diverged:
            return {"diverged": int(diverged.group(1)), "seconds": round(seconds, 1)}
        return {"error": train.stderr.strip().splitlines()[-1:] or ["training failed"]}
    scored = subprocess.run(
        [
            os.path.join(args.bin, "brs-train"), "evaluate", "--checkpoint", run_dir,
            "--input", os.path.join(data, "testA"), "--target", os.path.join(data, "testB"),
            "--device", "cpu", "--json",
        ],
        capture_output=True, text=True,
    )
    if scored.returncode != 0:
        return {"error": scored.stderr.strip().splitlines()[-1:] or ["evaluation failed"]}
    result = json.loads(scored.stdout)
    result.pop("skipped", None)
    result["seconds"] = round(seconds, 1)
    reached = re.search(r"(?:stopped at iteration|done:) (\d+)", train.stdout)
    if reached:
        result["iterations"] = int(reached.group(1))
    return result


def table(results, settings, mappings):
    """Markdown: one row per setting, mean ± spread (runs) per mapping, then over all mappings."""
    lines = [
        "| setting | " + " | ".join(mappings) + " | all mappings | diverged | s/run | iterations/run |",
        "|---|" + "---|" * (len(mappings) + 4),
    ]
    for name in settings:
        cells, every, seconds, iterations = [], [], [], []
        mine = [r for r in results if r["setting"] == name and ("ratio" in r or "diverged" in r)]
        diverged = f"{sum('diverged' in r for r in mine)} of {len(mine)}"
        for m in mappings:
            runs = [r for r in results if r["setting"] == name and r["mapping"] == m and "ratio" in r]
            ratios = [r["ratio"] for r in runs]
            seconds += [r["seconds"] for r in runs]
            iterations += [r["iterations"] for r in runs if "iterations" in r]
            every += ratios
            cells.append(fmt(ratios))
        mean_s = f"{statistics.mean(seconds):.0f}" if seconds else "-"
        mean_i = f"{statistics.mean(iterations):.0f}" if iterations else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fmt(every)} | {diverged} | {mean_s} | {mean_i} |")
    return "\n".join(lines)


def fmt(values):
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f} ({len(values)})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="folder with brs-dataset and brs-train")
    ap.add_argument("--photos", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", required=True, help="the config every setting starts from (e.g. configs/demo.toml)")
    ap.add_argument("--setting", action="append", default=[], help="NAME=KEY=VALUE;KEY=VALUE (repeatable)")
    ap.add_argument("--mappings", default="cartoon,warm,tone,blur")
    ap.add_argument("--seeds", default="7,11,12")
    length = ap.add_mutually_exclusive_group()
    length.add_argument("--iterations", type=int, default=400)
    length.add_argument("--minutes", type=float, help="train each run to this time budget instead")
    ap.add_argument("--count", type=int, default=200, help="training images per domain")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", action="store_true",
                    help="train nothing: the table of the runs already in OUT/results.jsonl")
    args = ap.parse_args()
    with open(args.base, "rb") as f:
        base = tomllib.load(f)
    settings = dict(parse_setting(s) for s in args.setting) or {"base": {}}
    mappings = args.mappings.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    os.makedirs(args.out, exist_ok=True)
    results_path = os.path.join(args.out, "results.jsonl")
    results = []
    if os.path.exists(results_path):
        with open(results_path) as f:
            results = [json.loads(line) for line in f if line.strip()]
    # A run that diverged is a result (its setting is not safe), not a failure to retry.
    done = {(r["mapping"], stored_identity(r)) for r in results if "ratio" in r or "diverged" in r}
    runs = {
        (name, m, seed): resolved(base, overrides, args, seed)
        for name, overrides in settings.items()
        for m in mappings
        for seed in seeds
    }
    todo = [(k, c) for k, c in runs.items() if (k[1], identity(c)) not in done]
    print(f"{len(todo)} runs to do ({len(runs) - len(todo)} already in {results_path})", file=sys.stderr)
    if args.report:
        todo = []
    sizes = sorted({c.get("img_size", 256) for (_, c) in todo})
    data = {(m, size): dataset(args, m, size) for m in mappings for size in sizes}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            pool.submit(train_and_score, args, name, config, m, data[(m, config.get("img_size", 256))]):
                (name, m, seed, config)
            for (name, m, seed), config in todo
        }
        for future in concurrent.futures.as_completed(futures):
            name, m, seed, config = futures[future]
            r = dict(future.result(), setting=name, mapping=m, seed=seed, config=identity(config))
            results.append(r)
            with open(results_path, "a") as f:
                f.write(json.dumps(r) + "\n")
            shown = (f"ratio {r['ratio']:.3f}" if "ratio" in r
                     else f"diverged at iteration {r['diverged']}" if "diverged" in r
                     else f"error {r['error']}")
            print(f"{name} {m} seed {seed}: {shown} ({r.get('seconds', '-')} s)", file=sys.stderr)
    wanted = {(m, identity(c)): name for (name, m, _), c in runs.items()}
    here = [dict(r, setting=wanted[key]) for r in results
            if (key := (r["mapping"], stored_identity(r))) in wanted]
    length = f"{args.minutes} minutes" if args.minutes is not None else f"{args.iterations} iterations"
    print(f"\n{args.base} with each setting's keys, {length} per run ({args.jobs} at a time, "
          f"{args.threads} thread(s) each), seeds {args.seeds}; "
          "held-out error / identity error, mean ± sample sd (runs):\n")
    print(table(here, list(settings), mappings))


if __name__ == "__main__":
    main()
