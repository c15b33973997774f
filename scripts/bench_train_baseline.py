"""PyTorch eager baseline for scripts/bench-train: one U-GAT-IT training iteration as the official
code (znxlwm/UGATIT-pytorch, UGATIT.py `train`) runs it, timed.

The networks come from scripts/ugatit_torch.py (a layer-for-layer port of the official
networks.py). The step below follows UGATIT.py line for line in the official style: every network
called separately, the D step computing the fakes and backpropagating through the generators,
the G step computing them again, the discriminators' gradients computed and discarded, rho
clipped after the step. Inputs are random batches in [-1, 1] (data loading is left out, which
only flatters the baseline). Prints one JSON line: {"sec_per_it": ..., "threads": ...}.

usage: bench_train_baseline.py --img-size 128 --ch 16 [--light] [--n-res 4] [--warmup 2] [--iters 5]
"""
import argparse
import itertools
import json
import os
import sys
import time

import torch
import torch.nn as nn

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
    genA2B, genB2A = nets["genA2B"], nets["genB2A"]
    disGA, disGB, disLA, disLB = nets["disGA"], nets["disGB"], nets["disLA"], nets["disLB"]
    for n in nets.values():
        n.train()
    L1_loss, MSE_loss, BCE_loss = nn.L1Loss(), nn.MSELoss(), nn.BCEWithLogitsLoss()
    G_optim = torch.optim.Adam(itertools.chain(genA2B.parameters(), genB2A.parameters()),
                               lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-4)
    D_optim = torch.optim.Adam(itertools.chain(disGA.parameters(), disGB.parameters(),
                                               disLA.parameters(), disLB.parameters()),
                               lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-4)
    adv_weight, cycle_weight, identity_weight, cam_weight = 1, 10, 10, 1000

    def clip_rho(m):
        # The official RhoClipper(0, 1).
        if hasattr(m, "rho"):
            m.rho.data = m.rho.data.clamp(0, 1)

    shape = (args.batch_size, 3, args.img_size, args.img_size)

    def step():
        real_A = torch.rand(shape) * 2 - 1
        real_B = torch.rand(shape) * 2 - 1

        # Update D
        D_optim.zero_grad()
        fake_A2B, _, _ = genA2B(real_A)
        fake_B2A, _, _ = genB2A(real_B)
        real_GA_logit, real_GA_cam_logit, _ = disGA(real_A)
        real_LA_logit, real_LA_cam_logit, _ = disLA(real_A)
        real_GB_logit, real_GB_cam_logit, _ = disGB(real_B)
        real_LB_logit, real_LB_cam_logit, _ = disLB(real_B)
        fake_GA_logit, fake_GA_cam_logit, _ = disGA(fake_B2A)
        fake_LA_logit, fake_LA_cam_logit, _ = disLA(fake_B2A)
        fake_GB_logit, fake_GB_cam_logit, _ = disGB(fake_A2B)
        fake_LB_logit, fake_LB_cam_logit, _ = disLB(fake_A2B)

        def d_pair(real, fake):
            return MSE_loss(real, torch.ones_like(real)) + MSE_loss(fake, torch.zeros_like(fake))

        D_loss_A = adv_weight * (d_pair(real_GA_logit, fake_GA_logit) + d_pair(real_GA_cam_logit, fake_GA_cam_logit)
                                 + d_pair(real_LA_logit, fake_LA_logit) + d_pair(real_LA_cam_logit, fake_LA_cam_logit))
        D_loss_B = adv_weight * (d_pair(real_GB_logit, fake_GB_logit) + d_pair(real_GB_cam_logit, fake_GB_cam_logit)
                                 + d_pair(real_LB_logit, fake_LB_logit) + d_pair(real_LB_cam_logit, fake_LB_cam_logit))
        Discriminator_loss = D_loss_A + D_loss_B
        Discriminator_loss.backward()
        D_optim.step()

        # Update G
        G_optim.zero_grad()
        fake_A2B, fake_A2B_cam_logit, _ = genA2B(real_A)
        fake_B2A, fake_B2A_cam_logit, _ = genB2A(real_B)
        fake_A2B2A, _, _ = genB2A(fake_A2B)
        fake_B2A2B, _, _ = genA2B(fake_B2A)
        fake_A2A, fake_A2A_cam_logit, _ = genB2A(real_A)
        fake_B2B, fake_B2B_cam_logit, _ = genA2B(real_B)
        fake_GA_logit, fake_GA_cam_logit, _ = disGA(fake_B2A)
        fake_LA_logit, fake_LA_cam_logit, _ = disLA(fake_B2A)
        fake_GB_logit, fake_GB_cam_logit, _ = disGB(fake_A2B)
        fake_LB_logit, fake_LB_cam_logit, _ = disLB(fake_A2B)

        def ones(x):
            return MSE_loss(x, torch.ones_like(x))

        G_ad_A = ones(fake_GA_logit) + ones(fake_GA_cam_logit) + ones(fake_LA_logit) + ones(fake_LA_cam_logit)
        G_ad_B = ones(fake_GB_logit) + ones(fake_GB_cam_logit) + ones(fake_LB_logit) + ones(fake_LB_cam_logit)
        G_recon_loss_A = L1_loss(fake_A2B2A, real_A)
        G_recon_loss_B = L1_loss(fake_B2A2B, real_B)
        G_identity_loss_A = L1_loss(fake_A2A, real_A)
        G_identity_loss_B = L1_loss(fake_B2B, real_B)
        G_cam_loss_A = (BCE_loss(fake_B2A_cam_logit, torch.ones_like(fake_B2A_cam_logit))
                        + BCE_loss(fake_A2A_cam_logit, torch.zeros_like(fake_A2A_cam_logit)))
        G_cam_loss_B = (BCE_loss(fake_A2B_cam_logit, torch.ones_like(fake_A2B_cam_logit))
                        + BCE_loss(fake_B2B_cam_logit, torch.zeros_like(fake_B2B_cam_logit)))
        G_loss_A = (adv_weight * G_ad_A + cycle_weight * G_recon_loss_A
                    + identity_weight * G_identity_loss_A + cam_weight * G_cam_loss_A)
        G_loss_B = (adv_weight * G_ad_B + cycle_weight * G_recon_loss_B
                    + identity_weight * G_identity_loss_B + cam_weight * G_cam_loss_B)
        Generator_loss = G_loss_A + G_loss_B
        Generator_loss.backward()
        G_optim.step()
        genA2B.apply(clip_rho)
        genB2A.apply(clip_rho)
        return Discriminator_loss.item(), Generator_loss.item()

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
