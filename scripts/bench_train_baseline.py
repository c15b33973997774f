"""PyTorch eager baseline for scripts/bench-train: one U-GAT-IT training iteration as the official
code (znxlwm/UGATIT-pytorch, UGATIT.py `train`) runs it, timed.

The networks and the step come from scripts/ugatit_torch.py (a layer-for-layer port of the
official networks.py, and `OfficialTrainer`, UGATIT.py's iteration line for line; brs-train's
step-parity test checks our step against that same code). Inputs are random batches in [-1, 1]
(data loading is left out, which only flatters the baseline). Prints one JSON line: {"sec_per_it": ..., "threads": ...}.

usage: bench_train_baseline.py --img-size 128 --ch 16 [--light] [--n-res 4] [--warmup 2] [--iters 5]
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ugatit_torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--ch", type=int, default=16)
    ap.add_argument("--n-res", type=int, default=4)
    ap.add_argument("--light", action="store_true")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="0 keeps torch's default")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    nets = ugatit_torch.build(args.img_size, args.ch, args.n_res, args.light)
    trainer = ugatit_torch.OfficialTrainer(nets)
    shape = (args.batch_size, 3, args.img_size, args.img_size)

    def step():
        return trainer.step(torch.rand(shape) * 2 - 1, torch.rand(shape) * 2 - 1)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({
        "sec_per_it": sum(times) / len(times),
        "min": min(times),
        "max": max(times),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
