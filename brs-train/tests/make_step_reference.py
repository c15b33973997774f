"""Runs the official U-GAT-IT training iteration (scripts/ugatit_torch.py `OfficialTrainer`) for
brs-train's step-parity test.

usage: make_step_reference.py OUT_DIR IMG_SIZE CH N_RES LIGHT(0|1) BATCH STEPS SEED

OUT_DIR/parity_params_0000000.pt       the six networks before, in the official checkpoint format
OUT_DIR/parity_params_00000{STEPS}.pt  the six networks after STEPS official iterations
OUT_DIR/inputs.safetensors             real_A.K and real_B.K, the batches of iteration K
OUT_DIR/losses.json                    [[Discriminator_loss, Generator_loss], ...] per iteration
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import ugatit_torch  # noqa: E402


def main():
    out, img, ch, n_res, light, batch, steps, seed = sys.argv[1], *map(int, sys.argv[2:9])
    torch.manual_seed(seed)
    nets = ugatit_torch.build(img, ch, n_res, bool(light))

    def save(iteration):
        path = os.path.join(out, f"parity_params_{iteration:07d}.pt")
        torch.save({k: v.state_dict() for k, v in nets.items()}, path)

    save(0)
    trainer = ugatit_torch.OfficialTrainer(nets)
    inputs, losses = {}, []
    for k in range(steps):
        real_A = torch.rand(batch, 3, img, img) * 2 - 1
        real_B = torch.rand(batch, 3, img, img) * 2 - 1
        inputs[f"real_A.{k}"], inputs[f"real_B.{k}"] = real_A, real_B
        losses.append(trainer.step(real_A, real_B))
    save(steps)
    save_file(inputs, os.path.join(out, "inputs.safetensors"))
    with open(os.path.join(out, "losses.json"), "w") as f:
        json.dump(losses, f)


if __name__ == "__main__":
    main()
