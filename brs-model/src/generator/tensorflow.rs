//! The TensorFlow flavour's generator: the network of the authors' TensorFlow code
//! (taki0112/UGATIT, `UGATIT.generator`), whose released selfie2anime weights brs imports.
//!
//! The same plan as the PyTorch flavour, with these differences, each visible in the weights:
//! every convolution has a bias; the encoder's instance norms have a learned scale and offset;
//! one CAM logit layer with a bias serves both pooled branches, and both maps are weighted by its
//! weight plus bias; the MLP's layers have biases; AdaLIN and ILN use the biased variance
//! (`tf.nn.moments`), AdaLIN's rho starts at 1 and, with `smoothing`, mixes with `rho - 0.1`
//! clipped to [0, 1]; the stride-2 convolutions pad one pixel before and none after.
//! Tensors stay NCHW here: `import::tensorflow` transposes the NHWC / HWIO weights once.

use tch::Tensor;
use tch::nn::Path;

use super::{GeneratorOutput, Mlp};
use crate::config::ModelConfig;
use crate::layers::{Conv2d, Linear, channel_sum, global_pools, reflect_tf, upsample2x};
use crate::norm::{AdaLin, AffineInstanceNorm, Iln, Statistics};

/// A convolution with the official `conv`'s reflection padding, and what follows it.
#[derive(Debug)]
struct PaddedConv {
    conv: Conv2d,
    k: i64,
    stride: i64,
    pad: i64,
}

impl PaddedConv {
    fn new(p: &Path, c_in: i64, c_out: i64, k: i64, stride: i64, pad: i64) -> Self {
        PaddedConv {
            conv: Conv2d::new_tf(p, c_in, c_out, k, stride),
            k,
            stride,
            pad,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.conv
            .forward(&reflect_tf(x, self.k, self.stride, self.pad))
    }
}

/// Conv, instance norm with scale and offset (and ReLU where the caller wants it).
#[derive(Debug)]
struct ConvNorm {
    conv: PaddedConv,
    norm: AffineInstanceNorm,
}

impl ConvNorm {
    fn new(p: &Path, c_in: i64, c_out: i64, k: i64, stride: i64, pad: i64) -> Self {
        ConvNorm {
            conv: PaddedConv::new(&(p / "conv"), c_in, c_out, k, stride, pad),
            norm: AffineInstanceNorm::new(&(p / "norm"), c_out),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.norm.forward(&self.conv.forward(x))
    }
}

#[derive(Debug)]
struct ResBlock {
    first: ConvNorm,
    second: ConvNorm,
}

impl ResBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        x + self.second.forward(&self.first.forward(x).relu())
    }
}

#[derive(Debug)]
struct AdaLinBlock {
    conv1: PaddedConv,
    norm1: AdaLin,
    conv2: PaddedConv,
    norm2: AdaLin,
}

impl AdaLinBlock {
    fn forward(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
        let h = self
            .norm1
            .forward(&self.conv1.forward(x), gamma, beta)
            .relu();
        self.norm2.forward(&self.conv2.forward(&h), gamma, beta) + x
    }
}

#[derive(Debug)]
struct UpBlock {
    conv: PaddedConv,
    norm: Iln,
}

#[derive(Debug)]
pub(crate) struct TensorflowGenerator {
    conv_in: ConvNorm,
    down: Vec<ConvNorm>,
    encoder_res: Vec<ResBlock>,
    /// One layer scores both pooled vectors: weight [1, C], bias [1].
    cam_fc: Linear,
    cam_conv: Conv2d,
    mlp: Mlp,
    decoder_res: Vec<AdaLinBlock>,
    up: Vec<UpBlock>,
    conv_out: PaddedConv,
}

impl TensorflowGenerator {
    pub(crate) fn new(p: &Path, cfg: &ModelConfig) -> Self {
        let ch = cfg.ch;
        let deep = ch * 4;
        let enc = p / "encoder";
        let cam = p / "cam";
        let mlp = p / "mlp";
        let dec = p / "decoder";
        let res = |i: i64| {
            let block = &enc / format!("res{i}");
            ResBlock {
                first: ConvNorm::new(&(&block / "first"), deep, deep, 3, 1, 1),
                second: ConvNorm::new(&(&block / "second"), deep, deep, 3, 1, 1),
            }
        };
        let ada = |i: i64| {
            let block = &dec / format!("res{i}");
            AdaLinBlock {
                conv1: PaddedConv::new(&(&block / "conv1"), deep, deep, 3, 1, 1),
                norm1: AdaLin::new_tf(&(&block / "norm1"), deep, cfg.smoothing),
                conv2: PaddedConv::new(&(&block / "conv2"), deep, deep, 3, 1, 1),
                norm2: AdaLin::new_tf(&(&block / "norm2"), deep, cfg.smoothing),
            }
        };
        TensorflowGenerator {
            conv_in: ConvNorm::new(&(&enc / "conv_in"), cfg.img_ch, ch, 7, 1, 3),
            down: vec![
                ConvNorm::new(&(&enc / "down1"), ch, ch * 2, 3, 2, 1),
                ConvNorm::new(&(&enc / "down2"), ch * 2, deep, 3, 2, 1),
            ],
            encoder_res: (1..=cfg.n_res).map(res).collect(),
            cam_fc: Linear::new_tf(&(&cam / "fc"), deep, 1),
            cam_conv: Conv2d::new_tf(&(&cam / "conv1x1"), deep * 2, deep, 1, 1),
            mlp: Mlp::new(&mlp, cfg, Linear::new_tf),
            decoder_res: (1..=cfg.n_res).map(ada).collect(),
            up: [(1, deep, ch * 2), (2, ch * 2, ch)]
                .into_iter()
                .map(|(i, c_in, c_out)| {
                    let up = &dec / format!("up{i}");
                    UpBlock {
                        conv: PaddedConv::new(&(&up / "conv"), c_in, c_out, 3, 1, 1),
                        norm: Iln::new(&(&up / "norm"), c_out, Statistics::Biased),
                    }
                })
                .collect(),
            conv_out: PaddedConv::new(&(&dec / "conv_out"), ch, cfg.img_ch, 7, 1, 3),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> GeneratorOutput {
        let mut h = self.conv_in.forward(x).relu();
        for down in &self.down {
            h = down.forward(&h).relu();
        }
        for block in &self.encoder_res {
            h = block.forward(&h);
        }
        // One scorer for both pooled vectors; its weight plus bias weights the map, for both.
        let (gap, gmp) = global_pools(&h);
        let cam_logit = Tensor::cat(&[self.cam_fc.forward(&gap), self.cam_fc.forward(&gmp)], 1);
        let attended = &h * self.cam_fc.channel_weights(&self.cam_fc.weight);
        let h = self
            .cam_conv
            .forward(&Tensor::cat(&[&attended, &attended], 1))
            .relu();
        let heatmap = channel_sum(&h);
        let (gamma, beta) = self.mlp.forward(&h);

        let mut h = h;
        for block in &self.decoder_res {
            h = block.forward(&h, &gamma, &beta);
        }
        for up in &self.up {
            h = up.norm.forward(&up.conv.forward(&upsample2x(&h))).relu();
        }
        let image = self.conv_out.forward(&h).tanh();
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
