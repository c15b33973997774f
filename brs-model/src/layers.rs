//! Convolution and linear layers initialised as PyTorch initialises them, so a fresh brs model
//! starts from the same distribution as a fresh reference model.

use tch::Tensor;
use tch::nn::{Init, Path};

use crate::config::Flavour;

/// PyTorch's default for Conv2d and Linear (kaiming_uniform with a = sqrt(5)) reduces to
/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases alike.
fn fan_in_uniform(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A square convolution without built-in padding (U-GAT-IT pads by reflection first).
#[derive(Debug)]
pub(crate) struct Conv2d {
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
    stride: i64,
}

impl Conv2d {
    pub(crate) fn new(p: &Path, c_in: i64, c_out: i64, k: i64, stride: i64, bias: bool) -> Self {
        let init = fan_in_uniform(c_in * k * k);
        Conv2d {
            weight: p.var("weight", &[c_out, c_in, k, k], init),
            bias: bias.then(|| p.var("bias", &[c_out], init)),
            stride,
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with(x, &self.weight)
    }

    /// The convolution with another weight of the same shape (spectral norm divides it).
    pub(crate) fn forward_with(&self, x: &Tensor, weight: &Tensor) -> Tensor {
        x.conv2d(weight, self.bias.as_ref(), [self.stride], [0], [1], 1)
    }
}

/// A kernel of the TensorFlow flavour: N(0, 0.02), the official code's `weight_init` (its biases
/// start at 0). Drawn in
/// place: tch's `Init::Randn` builds the draw and its scaled copy as temporaries, 2 GiB for a
/// full generator's first MLP layer at 256 px.
fn tf_kernel(p: &Path, dims: &[i64]) -> Tensor {
    let w = p.var("weight", dims, Init::Const(0.0));
    tch::no_grad(|| {
        let _ = w.shallow_clone().normal_(0.0, 0.02);
    });
    w
}

impl Conv2d {
    /// A convolution of the TensorFlow flavour: always with a bias (the official `conv`'s
    /// default), initialised as the official code does.
    pub(crate) fn new_tf(p: &Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> Self {
        Conv2d {
            weight: tf_kernel(p, &[c_out, c_in, k, k]),
            bias: Some(p.var("bias", &[c_out], Init::Const(0.0))),
            stride,
        }
    }
}

/// A linear layer. The PyTorch flavour's have no bias (its CAM 1x1 convs, which do, are Conv2d
/// here); the TensorFlow flavour's all have one.
#[derive(Debug)]
pub(crate) struct Linear {
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
}

impl Linear {
    /// Without a bias, initialised as PyTorch does.
    pub(crate) fn new(p: &Path, d_in: i64, d_out: i64) -> Self {
        Linear {
            weight: p.var("weight", &[d_out, d_in], fan_in_uniform(d_in)),
            bias: None,
        }
    }

    /// With a bias, initialised as the TensorFlow code does (its `fully_connected`).
    pub(crate) fn new_tf(p: &Path, d_in: i64, d_out: i64) -> Self {
        Linear {
            weight: tf_kernel(p, &[d_out, d_in]),
            bias: Some(p.var("bias", &[d_out], Init::Const(0.0))),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }

    /// A single-output scorer's per-channel weights as a [1, C, 1, 1] map weighting, plus its
    /// bias where it has one (the TensorFlow code's `fully_connected_with_w`).
    pub(crate) fn channel_weights(&self, weight: &Tensor) -> Tensor {
        let w = match &self.bias {
            Some(b) => weight + b.unsqueeze(1),
            None => weight.shallow_clone(),
        };
        w.unsqueeze(2).unsqueeze(3)
    }
}

/// Global average and max pooling of [N, C, H, W] maps to [N, C] each: what the CAM scores.
pub(crate) fn global_pools(h: &Tensor) -> (Tensor, Tensor) {
    let n = h.size()[0];
    (
        h.adaptive_avg_pool2d([1, 1]).view([n, -1]),
        h.adaptive_max_pool2d([1, 1]).0.view([n, -1]),
    )
}

/// The attention heatmap: the channel sum of the attended map, [N, 1, H, W].
pub(crate) fn channel_sum(h: &Tensor) -> Tensor {
    h.sum_dim_intlist([1i64].as_slice(), true, None)
}

/// Nearest-neighbour up-sampling by 2 (PyTorch's `Upsample` and TensorFlow's
/// `resize_nearest_neighbor` agree at this exact factor).
pub(crate) fn upsample2x(h: &Tensor) -> Tensor {
    let size = h.size();
    h.upsample_nearest2d([size[2] * 2, size[3] * 2], None, None)
}

/// Reflection padding of `n` pixels on every side.
pub(crate) fn reflect(x: &Tensor, n: i64) -> Tensor {
    x.reflection_pad2d([n, n, n, n])
}

/// Reflection padding as the official TensorFlow `conv` pads before a VALID convolution: `pad`
/// on every side when `k - stride` is even, otherwise `pad` before and `k - stride - pad` after
/// (a stride-2 3x3 conv pads 1 then 0, a stride-1 4x4 conv 1 then 2).
pub(crate) fn reflect_tf(x: &Tensor, k: i64, stride: i64, pad: i64) -> Tensor {
    let (before, after) = Flavour::tf_padding(k, stride, pad);
    x.reflection_pad2d([before, after, before, after])
}

/// LeakyReLU with the discriminators' slope of 0.2 (tch's leaky_relu is fixed at 0.01).
pub(crate) fn leaky_relu(x: &Tensor) -> Tensor {
    x.maximum(&(x * 0.2))
}
