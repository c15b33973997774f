"""U-GAT-IT networks in PyTorch with the official code's module layout and state_dict keys.

Shared by the Python side of brs: the import parity test (which saves a checkpoint in the official
format and compares outputs), and the PyTorch baselines of the training and serving benchmarks.
It follows the official znxlwm/UGATIT-pytorch `networks.py` (after its fix of issue #30, Aug 2019:
AdaLIN/ILN use the true unbiased variance over (H, W) and (C, H, W), as the paper and the TF code do)
layer for layer, so weights move between it and brs unchanged.
`load_brs_generator` reads a brs checkpoint or export (safetensors) into it.
"""
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv(c_in, c_out, k, stride=1, bias=False):
    return nn.Conv2d(c_in, c_out, kernel_size=k, stride=stride, padding=0, bias=bias)


class ResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), _conv(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), _conv(dim, dim, 3), nn.InstanceNorm2d(dim),
        )

    def forward(self, x):
        return x + self.conv_block(x)


def _mix(x, rho, eps):
    in_mean, in_var = torch.mean(x, dim=[2, 3], keepdim=True), torch.var(x, dim=[2, 3], keepdim=True)
    ln_mean, ln_var = torch.mean(x, dim=[1, 2, 3], keepdim=True), torch.var(x, dim=[1, 2, 3], keepdim=True)
    out_in = (x - in_mean) / torch.sqrt(in_var + eps)
    out_ln = (x - ln_mean) / torch.sqrt(ln_var + eps)
    r = rho.expand(x.shape[0], -1, -1, -1)
    return r * out_in + (1 - r) * out_ln


class adaILN(nn.Module):
    def __init__(self, c, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.rho = nn.Parameter(torch.full((1, c, 1, 1), 0.9))

    def forward(self, x, gamma, beta):
        return _mix(x, self.rho, self.eps) * gamma[:, :, None, None] + beta[:, :, None, None]


class ILN(nn.Module):
    def __init__(self, c, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.rho = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, c, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        n = x.shape[0]
        return _mix(x, self.rho, self.eps) * self.gamma.expand(n, -1, -1, -1) + self.beta.expand(n, -1, -1, -1)


class ResnetAdaILNBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.pad1, self.conv1, self.norm1 = nn.ReflectionPad2d(1), _conv(dim, dim, 3), adaILN(dim)
        self.relu1 = nn.ReLU(True)
        self.pad2, self.conv2, self.norm2 = nn.ReflectionPad2d(1), _conv(dim, dim, 3), adaILN(dim)

    def forward(self, x, gamma, beta):
        h = self.relu1(self.norm1(self.conv1(self.pad1(x)), gamma, beta))
        return self.norm2(self.conv2(self.pad2(h)), gamma, beta) + x


class ResnetGenerator(nn.Module):
    def __init__(self, input_nc=3, output_nc=3, ngf=64, n_blocks=4, img_size=256, light=False):
        super().__init__()
        self.n_blocks, self.light = n_blocks, light
        down = [nn.ReflectionPad2d(3), _conv(input_nc, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for i in range(2):
            m = 2 ** i
            down += [nn.ReflectionPad2d(1), _conv(ngf * m, ngf * m * 2, 3, stride=2),
                     nn.InstanceNorm2d(ngf * m * 2), nn.ReLU(True)]
        deep = ngf * 4
        down += [ResnetBlock(deep) for _ in range(n_blocks)]
        self.gap_fc = nn.Linear(deep, 1, bias=False)
        self.gmp_fc = nn.Linear(deep, 1, bias=False)
        self.conv1x1 = nn.Conv2d(deep * 2, deep, kernel_size=1, stride=1, bias=True)
        self.relu = nn.ReLU(True)
        fc_in = deep if light else (img_size // 4) * (img_size // 4) * deep
        self.FC = nn.Sequential(nn.Linear(fc_in, deep, bias=False), nn.ReLU(True),
                                nn.Linear(deep, deep, bias=False), nn.ReLU(True))
        self.gamma = nn.Linear(deep, deep, bias=False)
        self.beta = nn.Linear(deep, deep, bias=False)
        for i in range(n_blocks):
            setattr(self, f"UpBlock1_{i + 1}", ResnetAdaILNBlock(deep))
        up = []
        for i in range(2):
            m = 2 ** (2 - i)
            up += [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                   _conv(ngf * m, ngf * m // 2, 3), ILN(ngf * m // 2), nn.ReLU(True)]
        up += [nn.ReflectionPad2d(3), _conv(ngf, output_nc, 7), nn.Tanh()]
        self.DownBlock = nn.Sequential(*down)
        self.UpBlock2 = nn.Sequential(*up)

    def forward(self, x):
        x = self.DownBlock(x)
        n = x.shape[0]
        gap_logit = self.gap_fc(F.adaptive_avg_pool2d(x, 1).view(n, -1))
        gmp_logit = self.gmp_fc(F.adaptive_max_pool2d(x, 1).view(n, -1))
        gap = x * self.gap_fc.weight[:, :, None, None]
        gmp = x * self.gmp_fc.weight[:, :, None, None]
        cam_logit = torch.cat([gap_logit, gmp_logit], 1)
        x = self.relu(self.conv1x1(torch.cat([gap, gmp], 1)))
        heatmap = torch.sum(x, dim=1, keepdim=True)
        style = F.adaptive_avg_pool2d(x, 1).view(n, -1) if self.light else x.view(n, -1)
        style = self.FC(style)
        gamma, beta = self.gamma(style), self.beta(style)
        for i in range(self.n_blocks):
            x = getattr(self, f"UpBlock1_{i + 1}")(x, gamma, beta)
        return self.UpBlock2(x), cam_logit, heatmap


class Discriminator(nn.Module):
    def __init__(self, input_nc=3, ndf=64, n_layers=5):
        super().__init__()
        sn = nn.utils.spectral_norm
        model = [nn.ReflectionPad2d(1), sn(nn.Conv2d(input_nc, ndf, 4, 2, 0, bias=True)), nn.LeakyReLU(0.2, True)]
        for i in range(1, n_layers - 2):
            m = 2 ** (i - 1)
            model += [nn.ReflectionPad2d(1), sn(nn.Conv2d(ndf * m, ndf * m * 2, 4, 2, 0, bias=True)),
                      nn.LeakyReLU(0.2, True)]
        m = 2 ** (n_layers - 3)
        model += [nn.ReflectionPad2d(1), sn(nn.Conv2d(ndf * m, ndf * m * 2, 4, 1, 0, bias=True)),
                  nn.LeakyReLU(0.2, True)]
        c = ndf * 2 ** (n_layers - 2)
        self.gap_fc = sn(nn.Linear(c, 1, bias=False))
        self.gmp_fc = sn(nn.Linear(c, 1, bias=False))
        self.conv1x1 = nn.Conv2d(c * 2, c, kernel_size=1, stride=1, bias=True)
        self.leaky_relu = nn.LeakyReLU(0.2, True)
        self.pad = nn.ReflectionPad2d(1)
        self.conv = sn(nn.Conv2d(c, 1, 4, 1, 0, bias=False))
        self.model = nn.Sequential(*model)

    def forward(self, x):
        x = self.model(x)
        n = x.shape[0]
        gap_logit = self.gap_fc(F.adaptive_avg_pool2d(x, 1).view(n, -1))
        gmp_logit = self.gmp_fc(F.adaptive_max_pool2d(x, 1).view(n, -1))
        # The official code weights the map with parameters()[0], i.e. the raw weight_orig.
        gap = x * self.gap_fc.weight_orig[:, :, None, None]
        gmp = x * self.gmp_fc.weight_orig[:, :, None, None]
        cam_logit = torch.cat([gap_logit, gmp_logit], 1)
        x = self.leaky_relu(self.conv1x1(torch.cat([gap, gmp], 1)))
        heatmap = torch.sum(x, dim=1, keepdim=True)
        return self.conv(self.pad(x)), cam_logit, heatmap


def build(img_size=256, ch=64, n_res=4, light=False):
    """The six networks of the official UGATIT class, by their official names."""
    gen = lambda: ResnetGenerator(3, 3, ch, n_res, img_size, light)  # noqa: E731
    return {
        "genA2B": gen(), "genB2A": gen(),
        "disGA": Discriminator(3, ch, 7), "disGB": Discriminator(3, ch, 7),
        "disLA": Discriminator(3, ch, 5), "disLB": Discriminator(3, ch, 5),
    }


class OfficialTrainer:
    """The official UGATIT.py training iteration, line for line: every network called separately,
    the D step computing the fakes and backpropagating through the generators, the G step computing
    them again, the discriminators' gradients computed and discarded, rho clipped after the step.
    Used by the training benchmark's baseline and by brs-train's step-parity test."""

    def __init__(self, nets, lr=1e-4, weight_decay=1e-4, adv_weight=1.0, cycle_weight=10.0,
                 identity_weight=10.0, cam_weight=1000.0):
        import itertools

        self.nets = nets
        for n in nets.values():
            n.train()
        self.lr = lr
        self.w = (adv_weight, cycle_weight, identity_weight, cam_weight)
        self.L1_loss, self.MSE_loss, self.BCE_loss = nn.L1Loss(), nn.MSELoss(), nn.BCEWithLogitsLoss()
        g = itertools.chain(nets["genA2B"].parameters(), nets["genB2A"].parameters())
        d = itertools.chain(*(nets[k].parameters() for k in ("disGA", "disGB", "disLA", "disLB")))
        self.G_optim = torch.optim.Adam(g, lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay)
        self.D_optim = torch.optim.Adam(d, lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay)

    def set_lr(self, lr):
        # The official linear decay writes param_groups' lr in place.
        for opt in (self.G_optim, self.D_optim):
            for group in opt.param_groups:
                group["lr"] = lr

    def step(self, real_A, real_B):
        """One iteration; returns (Discriminator_loss, Generator_loss)."""
        genA2B, genB2A = self.nets["genA2B"], self.nets["genB2A"]
        disGA, disGB, disLA, disLB = (self.nets[k] for k in ("disGA", "disGB", "disLA", "disLB"))
        adv_weight, cycle_weight, identity_weight, cam_weight = self.w
        MSE, L1, BCE = self.MSE_loss, self.L1_loss, self.BCE_loss

        # Update D
        self.D_optim.zero_grad()
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
            return MSE(real, torch.ones_like(real)) + MSE(fake, torch.zeros_like(fake))

        D_loss_A = adv_weight * (d_pair(real_GA_logit, fake_GA_logit) + d_pair(real_GA_cam_logit, fake_GA_cam_logit)
                                 + d_pair(real_LA_logit, fake_LA_logit) + d_pair(real_LA_cam_logit, fake_LA_cam_logit))
        D_loss_B = adv_weight * (d_pair(real_GB_logit, fake_GB_logit) + d_pair(real_GB_cam_logit, fake_GB_cam_logit)
                                 + d_pair(real_LB_logit, fake_LB_logit) + d_pair(real_LB_cam_logit, fake_LB_cam_logit))
        Discriminator_loss = D_loss_A + D_loss_B
        Discriminator_loss.backward()
        self.D_optim.step()

        # Update G
        self.G_optim.zero_grad()
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
            return MSE(x, torch.ones_like(x))

        G_ad_A = ones(fake_GA_logit) + ones(fake_GA_cam_logit) + ones(fake_LA_logit) + ones(fake_LA_cam_logit)
        G_ad_B = ones(fake_GB_logit) + ones(fake_GB_cam_logit) + ones(fake_LB_logit) + ones(fake_LB_cam_logit)
        G_recon_loss_A = L1(fake_A2B2A, real_A)
        G_recon_loss_B = L1(fake_B2A2B, real_B)
        G_identity_loss_A = L1(fake_A2A, real_A)
        G_identity_loss_B = L1(fake_B2B, real_B)
        G_cam_loss_A = (BCE(fake_B2A_cam_logit, torch.ones_like(fake_B2A_cam_logit))
                        + BCE(fake_A2A_cam_logit, torch.zeros_like(fake_A2A_cam_logit)))
        G_cam_loss_B = (BCE(fake_A2B_cam_logit, torch.ones_like(fake_A2B_cam_logit))
                        + BCE(fake_B2B_cam_logit, torch.zeros_like(fake_B2B_cam_logit)))
        G_loss_A = (adv_weight * G_ad_A + cycle_weight * G_recon_loss_A
                    + identity_weight * G_identity_loss_A + cam_weight * G_cam_loss_A)
        G_loss_B = (adv_weight * G_ad_B + cycle_weight * G_recon_loss_B
                    + identity_weight * G_identity_loss_B + cam_weight * G_cam_loss_B)
        Generator_loss = G_loss_A + G_loss_B
        Generator_loss.backward()
        self.G_optim.step()

        # The official RhoClipper(0, 1) on both generators.
        for gen in (genA2B, genB2A):
            for m in gen.modules():
                if hasattr(m, "rho"):
                    m.rho.data = m.rho.data.clamp(0, 1)
        return Discriminator_loss.item(), Generator_loss.item()


# Our variable names -> the official ones, for a generator (see brs-model/src/import.rs).
def _official_generator_key(ours):
    fixed = {
        "encoder.conv_in.weight": "DownBlock.1.weight", "encoder.down1.weight": "DownBlock.5.weight",
        "encoder.down2.weight": "DownBlock.9.weight", "cam.gap_fc.weight": "gap_fc.weight",
        "cam.gmp_fc.weight": "gmp_fc.weight", "cam.conv1x1.weight": "conv1x1.weight",
        "cam.conv1x1.bias": "conv1x1.bias", "mlp.fc1.weight": "FC.0.weight", "mlp.fc2.weight": "FC.2.weight",
        "mlp.gamma.weight": "gamma.weight", "mlp.beta.weight": "beta.weight",
        "decoder.up1.conv.weight": "UpBlock2.2.weight", "decoder.up2.conv.weight": "UpBlock2.7.weight",
        "decoder.conv_out.weight": "UpBlock2.11.weight",
    }
    if ours in fixed:
        return fixed[ours]
    parts = ours.split(".")
    if parts[0] == "decoder" and parts[1] in ("up1", "up2"):
        return f"UpBlock2.{3 if parts[1] == 'up1' else 8}.{parts[3]}"
    if parts[0] == "encoder" and parts[1].startswith("res"):
        i = int(parts[1][3:]) - 1
        return f"DownBlock.{12 + i}.conv_block.{1 if parts[2] == 'conv1' else 5}.weight"
    if parts[0] == "decoder" and parts[1].startswith("res"):
        return f"UpBlock1_{parts[1][3:]}.{'.'.join(parts[2:])}"
    raise KeyError(ours)


def load_brs_generator(path, direction="a2b"):
    """A brs run/checkpoint/export directory -> (ResnetGenerator in eval mode, model config dict)."""
    from safetensors.torch import load_file

    if not os.path.exists(os.path.join(path, "meta.json")):
        with open(os.path.join(path, "latest")) as f:
            path = os.path.join(path, f.read().strip())
    with open(os.path.join(path, "meta.json")) as f:
        meta = json.load(f)
    cfg = meta["model"]
    name = "genA2B" if direction == "a2b" else "genB2A"
    ours = load_file(os.path.join(path, f"{name}.safetensors"))
    gen = ResnetGenerator(cfg["img_ch"], cfg["img_ch"], cfg["ch"], cfg["n_res"], cfg["img_size"], cfg["light"])
    state = {_official_generator_key(k): v.float() for k, v in ours.items()}
    gen.load_state_dict(state, strict=True)
    return gen.eval(), cfg
