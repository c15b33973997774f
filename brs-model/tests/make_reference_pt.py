"""Writes a checkpoint in the official UGATIT-pytorch format plus reference outputs, for parity tests.

usage: make_reference_pt.py OUT_DIR IMG_SIZE CH N_RES LIGHT(0|1) SEED

OUT_DIR/selfie2anime_params_0001000.pt   torch.save of the six state_dicts, as the official code saves
OUT_DIR/reference.safetensors            input x and each network's outputs on it (eval mode)
"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import ugatit_torch  # noqa: E402


def main():
    out, img, ch, n_res, light, seed = sys.argv[1], *map(int, sys.argv[2:7])
    torch.manual_seed(seed)
    nets = ugatit_torch.build(img, ch, n_res, bool(light))
    with torch.no_grad():
        # Move the norm parameters off their initial values so the test exercises them.
        for net in nets.values():
            for name, p in net.named_parameters():
                if name.endswith(("rho", "gamma", "beta")) and p.dim() == 4:
                    p.uniform_(0.2, 0.8) if name.endswith("rho") else p.normal_(1.0 if name.endswith("gamma") else 0.0, 0.1)
        # A few training-mode passes give spectral norm's u and v non-initial values.
        x = torch.rand(2, 3, img, img) * 2 - 1
        for name in ("disGA", "disGB", "disLA", "disLB"):
            nets[name].train()
            for _ in range(3):
                nets[name](x)
    torch.save({k: v.state_dict() for k, v in nets.items()}, os.path.join(out, "selfie2anime_params_0001000.pt"))
    tensors = {"x": x.contiguous()}
    with torch.no_grad():
        for name, net in nets.items():
            net.eval()
            outs = net(x)
            for label, t in zip(("image" if name.startswith("gen") else "logit", "cam_logit", "heatmap"), outs):
                tensors[f"{name}.{label}"] = t.contiguous()
    save_file(tensors, os.path.join(out, "reference.safetensors"))


if __name__ == "__main__":
    main()
