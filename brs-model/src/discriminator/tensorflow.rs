//! The TensorFlow flavour's discriminators (`UGATIT.discriminator_global` / `_local` of the
//! authors' code): the PyTorch flavour's plan with biases on every convolution, the stride-1
//! 4x4 convolutions padded 1 before and 2 after, one spectral-normed CAM layer with a bias whose
//! normalised weight plus bias weights the map, and TensorFlow's spectral norm (below).

use tch::Tensor;
use tch::nn::Path;

use super::DiscriminatorOutput;
use crate::config::ModelConfig;
use crate::layers::{Conv2d, Linear, channel_sum, global_pools, leaky_relu, reflect_tf};
use crate::spectral::{SpectralCall, TfSpectralNorm};

#[derive(Debug)]
struct SnConv {
    conv: Conv2d,
    sn: TfSpectralNorm,
    stride: i64,
}

impl SnConv {
    fn new(p: &Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        SnConv {
            conv: Conv2d::new_tf(p, c_in, c_out, 4, stride),
            sn: TfSpectralNorm::new(p, c_out),
            stride,
        }
    }

    fn forward(&self, x: &Tensor, call: SpectralCall) -> Tensor {
        let w = self.sn.normalized(&self.conv.weight, call);
        self.conv
            .forward_with(&reflect_tf(x, 4, self.stride, 1), &w)
    }
}

#[derive(Debug)]
pub(crate) struct TensorflowDiscriminator {
    body: Vec<SnConv>,
    cam_fc: Linear,
    cam_sn: TfSpectralNorm,
    cam_conv: Conv2d,
    head: SnConv,
}

impl TensorflowDiscriminator {
    pub(crate) fn new(p: &Path, cfg: &ModelConfig, n_layers: i64) -> Self {
        let body_path = p / "body";
        let mut c = cfg.ch;
        let mut body = vec![SnConv::new(&(&body_path / "conv0"), cfg.img_ch, c, 2)];
        for i in 1..(n_layers - 2) {
            body.push(SnConv::new(&(&body_path / format!("conv{i}")), c, c * 2, 2));
            c *= 2;
        }
        let last = n_layers - 2;
        body.push(SnConv::new(
            &(&body_path / format!("conv{last}")),
            c,
            c * 2,
            1,
        ));
        c *= 2;
        let cam = p / "cam";
        TensorflowDiscriminator {
            body,
            cam_fc: Linear::new_tf(&(&cam / "fc"), c, 1),
            cam_sn: TfSpectralNorm::new(&(&cam / "fc"), 1),
            cam_conv: Conv2d::new_tf(&(&cam / "conv1x1"), c * 2, c, 1, 1),
            head: SnConv::new(&(p / "head"), c, 1, 1),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor, call: SpectralCall) -> DiscriminatorOutput {
        let mut h = x.shallow_clone();
        for conv in &self.body {
            h = leaky_relu(&conv.forward(&h, call));
        }
        let (gap, gmp) = global_pools(&h);
        let w = self.cam_sn.normalized(&self.cam_fc.weight, call);
        let bias = self.cam_fc.bias.as_ref();
        let cam_logit = Tensor::cat(&[gap.linear(&w, bias), gmp.linear(&w, bias)], 1);
        // The normalised weight plus the bias weights the map, for both pooled branches.
        let attended = &h * self.cam_fc.channel_weights(&w);
        let h = leaky_relu(
            &self
                .cam_conv
                .forward(&Tensor::cat(&[&attended, &attended], 1)),
        );
        let heatmap = channel_sum(&h);
        let logit = self.head.forward(&h, call);
        DiscriminatorOutput {
            logit,
            cam_logit,
            heatmap,
        }
    }
}
