//! The PyTorch flavour's generator: encoder, CAM attention, gamma/beta MLP, AdaLIN decoder.
//!
//! Built layer by layer like the official `ResnetGenerator`, with our own readable variable
//! names (`encoder.conv_in.weight`, `decoder.res1.norm1.rho`...). `import.rs` maps the official
//! state_dict keys onto these names.

use tch::Tensor;
use tch::nn::Path;

use super::{GeneratorOutput, Mlp};
use crate::config::ModelConfig;
use crate::layers::{Conv2d, Linear, channel_sum, global_pools, reflect, upsample2x};
use crate::norm::{AdaLin, Iln, Statistics, instance_norm};

#[derive(Debug)]
struct ResBlock {
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ResBlock {
    fn new(p: &Path, dim: i64) -> Self {
        ResBlock {
            conv1: Conv2d::new(&(p / "conv1"), dim, dim, 3, 1, false),
            conv2: Conv2d::new(&(p / "conv2"), dim, dim, 3, 1, false),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = instance_norm(&self.conv1.forward(&reflect(x, 1))).relu();
        let h = instance_norm(&self.conv2.forward(&reflect(&h, 1)));
        x + h
    }
}

#[derive(Debug)]
struct AdaLinBlock {
    conv1: Conv2d,
    norm1: AdaLin,
    conv2: Conv2d,
    norm2: AdaLin,
}

impl AdaLinBlock {
    fn new(p: &Path, dim: i64) -> Self {
        AdaLinBlock {
            conv1: Conv2d::new(&(p / "conv1"), dim, dim, 3, 1, false),
            norm1: AdaLin::new(&(p / "norm1"), dim),
            conv2: Conv2d::new(&(p / "conv2"), dim, dim, 3, 1, false),
            norm2: AdaLin::new(&(p / "norm2"), dim),
        }
    }

    fn forward(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
        let h = self.conv1.forward(&reflect(x, 1));
        let h = self.norm1.forward(&h, gamma, beta).relu();
        let h = self.conv2.forward(&reflect(&h, 1));
        self.norm2.forward(&h, gamma, beta) + x
    }
}

#[derive(Debug)]
struct UpBlock {
    conv: Conv2d,
    norm: Iln,
}

/// The generator of one direction (A to B, or B to A).
#[derive(Debug)]
pub(crate) struct PytorchGenerator {
    conv_in: Conv2d,
    down: Vec<Conv2d>,
    encoder_res: Vec<ResBlock>,
    gap_fc: Linear,
    gmp_fc: Linear,
    cam_conv: Conv2d,
    mlp: Mlp,
    decoder_res: Vec<AdaLinBlock>,
    up: Vec<UpBlock>,
    conv_out: Conv2d,
}

impl PytorchGenerator {
    pub(crate) fn new(p: &Path, cfg: &ModelConfig) -> Self {
        let ch = cfg.ch;
        let deep = ch * 4;
        let enc = p / "encoder";
        let cam = p / "cam";
        let mlp = p / "mlp";
        let dec = p / "decoder";
        PytorchGenerator {
            conv_in: Conv2d::new(&(&enc / "conv_in"), cfg.img_ch, ch, 7, 1, false),
            down: vec![
                Conv2d::new(&(&enc / "down1"), ch, ch * 2, 3, 2, false),
                Conv2d::new(&(&enc / "down2"), ch * 2, deep, 3, 2, false),
            ],
            encoder_res: (1..=cfg.n_res)
                .map(|i| ResBlock::new(&(&enc / format!("res{i}")), deep))
                .collect(),
            gap_fc: Linear::new(&(&cam / "gap_fc"), deep, 1),
            gmp_fc: Linear::new(&(&cam / "gmp_fc"), deep, 1),
            cam_conv: Conv2d::new(&(&cam / "conv1x1"), deep * 2, deep, 1, 1, true),
            mlp: Mlp::new(&mlp, cfg, Linear::new),
            decoder_res: (1..=cfg.n_res)
                .map(|i| AdaLinBlock::new(&(&dec / format!("res{i}")), deep))
                .collect(),
            up: [(1, deep, ch * 2), (2, ch * 2, ch)]
                .into_iter()
                .map(|(i, c_in, c_out)| {
                    let up = &dec / format!("up{i}");
                    UpBlock {
                        conv: Conv2d::new(&(&up / "conv"), c_in, c_out, 3, 1, false),
                        norm: Iln::new(&(&up / "norm"), c_out, Statistics::Unbiased),
                    }
                })
                .collect(),
            conv_out: Conv2d::new(&(&dec / "conv_out"), ch, cfg.img_ch, 7, 1, false),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> GeneratorOutput {
        let mut h = instance_norm(&self.conv_in.forward(&reflect(x, 3))).relu();
        for down in &self.down {
            h = instance_norm(&down.forward(&reflect(&h, 1))).relu();
        }
        for block in &self.encoder_res {
            h = block.forward(&h);
        }
        // Class activation map: the FC weights that score the pooled features also weight the map.
        let (gap, gmp) = global_pools(&h);
        let cam_logit = Tensor::cat(&[self.gap_fc.forward(&gap), self.gmp_fc.forward(&gmp)], 1);
        let attended = Tensor::cat(
            &[
                &h * self.gap_fc.channel_weights(&self.gap_fc.weight),
                &h * self.gmp_fc.channel_weights(&self.gmp_fc.weight),
            ],
            1,
        );
        let h = self.cam_conv.forward(&attended).relu();
        let heatmap = channel_sum(&h);
        let (gamma, beta) = self.mlp.forward(&h);

        let mut h = h;
        for block in &self.decoder_res {
            h = block.forward(&h, &gamma, &beta);
        }
        for up in &self.up {
            h = up
                .norm
                .forward(&up.conv.forward(&reflect(&upsample2x(&h), 1)))
                .relu();
        }
        let image = self.conv_out.forward(&reflect(&h, 3)).tanh();
        GeneratorOutput {
            image,
            cam_logit,
            heatmap,
        }
    }

    pub(crate) fn rhos(&self) -> impl Iterator<Item = &Tensor> {
        self.decoder_res
            .iter()
            .flat_map(|b| [&b.norm1.rho, &b.norm2.rho])
            .chain(self.up.iter().map(|u| &u.norm.rho))
    }
}
