//! The PyTorch flavour's discriminators: a PatchGAN body of spectral-normed 4x4 convs, CAM attention, and
//! a patch logit head. The global discriminator has 7 layers, the local one 5.

use tch::Tensor;
use tch::nn::Path;

use super::DiscriminatorOutput;
use crate::config::ModelConfig;
use crate::layers::{Conv2d, Linear, channel_sum, global_pools, leaky_relu, reflect};
use crate::spectral::SpectralNorm;

#[derive(Debug)]
struct SnConv {
    conv: Conv2d,
    sn: SpectralNorm,
}

impl SnConv {
    fn new(p: &Path, c_in: i64, c_out: i64, stride: i64, bias: bool) -> Self {
        let conv = Conv2d::new(p, c_in, c_out, 4, stride, bias);
        let sn = SpectralNorm::new(p, &conv.weight);
        SnConv { conv, sn }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let w = self.sn.normalized(&self.conv.weight, train);
        self.conv.forward_with(&reflect(x, 1), &w)
    }
}

#[derive(Debug)]
struct SnLinear {
    fc: Linear,
    sn: SpectralNorm,
}

/// A discriminator with `n_layers` layers (7: global, 5: local).
#[derive(Debug)]
pub(crate) struct PytorchDiscriminator {
    body: Vec<SnConv>,
    gap_fc: SnLinear,
    gmp_fc: SnLinear,
    cam_conv: Conv2d,
    head: SnConv,
}

impl PytorchDiscriminator {
    pub(crate) fn new(p: &Path, cfg: &ModelConfig, n_layers: i64) -> Self {
        let ch = cfg.ch;
        let body_path = p / "body";
        let mut body = vec![SnConv::new(
            &(&body_path / "conv0"),
            cfg.img_ch,
            ch,
            2,
            true,
        )];
        let mut c = ch;
        for i in 1..(n_layers - 2) {
            body.push(SnConv::new(
                &(&body_path / format!("conv{i}")),
                c,
                c * 2,
                2,
                true,
            ));
            c *= 2;
        }
        let last = n_layers - 2;
        body.push(SnConv::new(
            &(&body_path / format!("conv{last}")),
            c,
            c * 2,
            1,
            true,
        ));
        c *= 2;
        let cam = p / "cam";
        let sn_linear = |name: &str| {
            let fc = Linear::new(&(&cam / name), c, 1);
            let sn = SpectralNorm::new(&(&cam / name), &fc.weight);
            SnLinear { fc, sn }
        };
        PytorchDiscriminator {
            body,
            gap_fc: sn_linear("gap_fc"),
            gmp_fc: sn_linear("gmp_fc"),
            cam_conv: Conv2d::new(&(&cam / "conv1x1"), c * 2, c, 1, 1, true),
            head: SnConv::new(&(p / "head"), c, 1, 1, false),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> DiscriminatorOutput {
        let mut h = x.shallow_clone();
        for conv in &self.body {
            h = leaky_relu(&conv.forward(&h, train));
        }
        let (gap, gmp) = global_pools(&h);
        let gap_w = self.gap_fc.sn.normalized(&self.gap_fc.fc.weight, train);
        let gmp_w = self.gmp_fc.sn.normalized(&self.gmp_fc.fc.weight, train);
        let cam_logit = Tensor::cat(
            &[
                gap.linear::<&Tensor>(&gap_w, None),
                gmp.linear::<&Tensor>(&gmp_w, None),
            ],
            1,
        );
        // The reference weights the map with `parameters()[0]` of the spectral-normed FCs, which
        // is the raw weight (`weight_orig`), not the normalised one: kept for fidelity.
        let attended = Tensor::cat(
            &[
                &h * self.gap_fc.fc.channel_weights(&self.gap_fc.fc.weight),
                &h * self.gmp_fc.fc.channel_weights(&self.gmp_fc.fc.weight),
            ],
            1,
        );
        let h = leaky_relu(&self.cam_conv.forward(&attended));
        let heatmap = channel_sum(&h);
        let logit = self.head.forward(&h, train);
        DiscriminatorOutput {
            logit,
            cam_logit,
            heatmap,
        }
    }
}
