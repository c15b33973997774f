//! The PyTorch flavour's generator: encoder, CAM attention, gamma/beta MLP, AdaLIN decoder.
//!
//! Built layer by layer like the official `ResnetGenerator`, with our own readable variable
//! names (`encoder.conv_in.weight`, `decoder.res1.norm1.rho`...). `import.rs` maps the official
//! state_dict keys onto these names.

use tch::Tensor;
use tch::nn::Path;

use super::GeneratorOutput;
use crate::config::ModelConfig;
use crate::layers::{Conv2d, Linear, reflect};
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
    fc1: Linear,
    fc2: Linear,
    gamma: Linear,
    beta: Linear,
    decoder_res: Vec<AdaLinBlock>,
    up: Vec<UpBlock>,
    conv_out: Conv2d,
    light: bool,
}

impl PytorchGenerator {
    pub(crate) fn new(p: &Path, cfg: &ModelConfig) -> Self {
        let ch = cfg.ch;
        let deep = ch * 4;
        let enc = p / "encoder";
        let cam = p / "cam";
        let mlp = p / "mlp";
        let dec = p / "decoder";
        let fc1_in = if cfg.light {
            deep
        } else {
            cfg.bottleneck() * cfg.bottleneck() * deep
        };
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
            fc1: Linear::new(&(&mlp / "fc1"), fc1_in, deep),
            fc2: Linear::new(&(&mlp / "fc2"), deep, deep),
            gamma: Linear::new(&(&mlp / "gamma"), deep, deep),
            beta: Linear::new(&(&mlp / "beta"), deep, deep),
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
            light: cfg.light,
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
        let n = h.size()[0];

        // Class activation map: the FC weights that score the pooled features also weight the map.
        let gap = h.adaptive_avg_pool2d([1, 1]).view([n, -1]);
        let gmp = h.adaptive_max_pool2d([1, 1]).0.view([n, -1]);
        let cam_logit = Tensor::cat(&[self.gap_fc.forward(&gap), self.gmp_fc.forward(&gmp)], 1);
        let attended = Tensor::cat(
            &[
                &h * self.gap_fc.weight.unsqueeze(2).unsqueeze(3),
                &h * self.gmp_fc.weight.unsqueeze(2).unsqueeze(3),
            ],
            1,
        );
        let h = self.cam_conv.forward(&attended).relu();
        let heatmap = h.sum_dim_intlist([1i64].as_slice(), true, None);

        let style = if self.light {
            h.adaptive_avg_pool2d([1, 1]).view([n, -1])
        } else {
            h.view([n, -1])
        };
        let style = self.fc2.forward(&self.fc1.forward(&style).relu()).relu();
        let (gamma, beta) = (self.gamma.forward(&style), self.beta.forward(&style));

        let mut h = h;
        for block in &self.decoder_res {
            h = block.forward(&h, &gamma, &beta);
        }
        for up in &self.up {
            let size = h.size();
            let h2 = h.upsample_nearest2d([size[2] * 2, size[3] * 2], None, None);
            h = up.norm.forward(&up.conv.forward(&reflect(&h2, 1))).relu();
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
