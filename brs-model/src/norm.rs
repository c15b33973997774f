//! Instance norm, ILN and AdaLIN as the paper and the official code compute them.
//!
//! AdaLIN mixes instance and layer normalisation by a learned per-channel rho:
//! `rho * (x - mu_in) / s_in + (1 - rho) * (x - mu_ln) / s_ln`, then `* gamma + beta`, with the
//! unbiased variance (`torch.var`) over (H, W) and (C, H, W) and eps 1e-5. (The official PyTorch
//! code first shipped `var(var(x, H), W)` here, a variance of variances; it fixed that in August
//! 2019, issue #30, to agree with the paper and its TensorFlow code. We follow the fixed code.)
//!
//! Without autograd (inference, sample grids) the mix is computed as what it is, one affine map
//! per (sample, channel), `x * scale + shift`: one pass over the map instead of six (the form
//! PyTorch's batch-norm kernels use), 6% off a 256 px generator forward. Under autograd we keep the
//! reference's term-by-term form: differentiating the fused form subtracts large, nearly equal
//! terms (`sum(g x) - mean * sum(g)`), and in float32 that flipped the sign of Adam's first step on
//! up to 2% of a layer's weights against the reference (brs-train's step-parity test).

use tch::Tensor;
use tch::nn::{Init, Path};

const EPS: f64 = 1e-5;

/// InstanceNorm2d without affine parameters (PyTorch's default): biased variance over H and W.
pub(crate) fn instance_norm(x: &Tensor) -> Tensor {
    x.instance_norm::<&Tensor>(None, None, None, None, true, 0.1, EPS, false)
}

/// Instance norm with a learned per-channel scale and offset, as tf.contrib's `instance_norm`
/// (center and scale on, biased variance, eps 1e-5) in the TensorFlow flavour's encoder.
#[derive(Debug)]
pub(crate) struct AffineInstanceNorm {
    gamma: Tensor,
    beta: Tensor,
}

impl AffineInstanceNorm {
    pub(crate) fn new(p: &Path, channels: i64) -> Self {
        AffineInstanceNorm {
            gamma: p.var("gamma", &[channels], Init::Const(1.0)),
            beta: p.var("beta", &[channels], Init::Const(0.0)),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        x.instance_norm(
            Some(&self.gamma),
            Some(&self.beta),
            None::<&Tensor>,
            None::<&Tensor>,
            true,
            0.1,
            EPS,
            false,
        )
    }
}

/// How a flavour normalises in AdaLIN and ILN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Statistics {
    /// PyTorch's `torch.var`: divides by n - 1.
    Unbiased,
    /// TensorFlow's `tf.nn.moments`: divides by n.
    Biased,
}

/// `rho * IN(x) + (1 - rho) * LN(x)`, then `* gamma + beta` (each broadcastable to [N, C, 1, 1]).
///
/// Statistics in two passes (mean, then squared deviations) instead of libtorch's `var_mean`,
/// whose Welford kernel took 15% of a float32 and 30% of a bfloat16 generator forward. The layer
/// statistics come from the instance ones without another pass over x: the sample's squared
/// deviations are each map's own plus `H*W` times its mean's squared distance from the sample
/// mean (Chan et al.'s pairwise update), a sum of non-negative terms, so nothing cancels.
fn mix_in_ln(x: &Tensor, rho: &Tensor, gamma: &Tensor, beta: &Tensor, stats: Statistics) -> Tensor {
    let size = x.size();
    let hw = (size[2] * size[3]) as f64;
    let c = size[1] as f64;
    let bias = match stats {
        Statistics::Unbiased => 1.0,
        Statistics::Biased => 0.0,
    };
    let in_mean = x.mean_dim([2i64, 3].as_slice(), true, None);
    let dev = x - &in_mean;
    let in_ss = dev
        .square()
        .sum_dim_intlist([2i64, 3].as_slice(), true, None);
    let ln_mean = in_mean.mean_dim([1i64].as_slice(), true, None);
    let between = (&in_mean - &ln_mean).square() * hw;
    let ln_ss = (&in_ss + between).sum_dim_intlist([1i64].as_slice(), true, None);
    let in_std = (in_ss / (hw - bias) + EPS).sqrt();
    let ln_std = (ln_ss / (c * hw - bias) + EPS).sqrt();
    if x.requires_grad() {
        let out_in = dev / in_std;
        let out_ln = (x - ln_mean) / ln_std;
        (rho * out_in + (1.0 - rho) * out_ln) * gamma + beta
    } else {
        let w_in = rho / in_std;
        let w_ln = (1.0 - rho) / ln_std;
        let scale = (&w_in + &w_ln) * gamma;
        let shift = beta - (w_in * in_mean + w_ln * ln_mean) * gamma;
        x * scale + shift
    }
}

/// Adaptive Layer-Instance Normalisation: gamma and beta come from the generator's MLP.
#[derive(Debug)]
pub(crate) struct AdaLin {
    pub(crate) rho: Tensor,
    stats: Statistics,
    /// The TensorFlow code's `smoothing`: the mix uses `rho - 0.1`, clipped to [0, 1].
    smoothing: bool,
}

impl AdaLin {
    /// The PyTorch flavour's: rho starts at 0.9, unbiased statistics.
    pub(crate) fn new(p: &Path, channels: i64) -> Self {
        AdaLin {
            rho: p.var("rho", &[1, channels, 1, 1], Init::Const(0.9)),
            stats: Statistics::Unbiased,
            smoothing: false,
        }
    }

    /// The TensorFlow flavour's: rho starts at 1, biased statistics, optional smoothing.
    pub(crate) fn new_tf(p: &Path, channels: i64, smoothing: bool) -> Self {
        AdaLin {
            rho: p.var("rho", &[1, channels, 1, 1], Init::Const(1.0)),
            stats: Statistics::Biased,
            smoothing,
        }
    }

    /// `gamma` and `beta` are [N, C].
    pub(crate) fn forward(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
        let spatial = |t: &Tensor| t.unsqueeze(2).unsqueeze(3);
        let smoothed;
        let rho = if self.smoothing {
            smoothed = (&self.rho - 0.1).clamp(0.0, 1.0);
            &smoothed
        } else {
            &self.rho
        };
        mix_in_ln(x, rho, &spatial(gamma), &spatial(beta), self.stats)
    }
}

/// Layer-Instance Normalisation with learned rho, gamma and beta (the decoder's up-sampling blocks).
#[derive(Debug)]
pub(crate) struct Iln {
    pub(crate) rho: Tensor,
    gamma: Tensor,
    beta: Tensor,
    stats: Statistics,
}

impl Iln {
    /// rho starts at 0 in both flavours; only the statistics differ.
    pub(crate) fn new(p: &Path, channels: i64, stats: Statistics) -> Self {
        let shape = [1, channels, 1, 1];
        Iln {
            rho: p.var("rho", &shape, Init::Const(0.0)),
            gamma: p.var("gamma", &shape, Init::Const(1.0)),
            beta: p.var("beta", &shape, Init::Const(0.0)),
            stats,
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        mix_in_ln(x, &self.rho, &self.gamma, &self.beta, self.stats)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn instance_norm_standardises_each_map() {
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu)) * 5.0 + 3.0;
        let y = instance_norm(&x);
        let mean = y.mean_dim([2i64, 3].as_slice(), false, None);
        let var = y.var_dim([2i64, 3].as_slice(), false, false);
        assert!(mean.abs().max().double_value(&[]) < 1e-5);
        assert!((var - 1.0).abs().max().double_value(&[]) < 1e-3);
    }

    /// The definition, term by term, unfused, with torch.var's unbiased variance.
    fn by_definition(x: &Tensor, rho: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
        by_definition_with(x, rho, gamma, beta, true)
    }

    fn by_definition_with(
        x: &Tensor,
        rho: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        unbiased: bool,
    ) -> Tensor {
        let norm = |dims: &[i64]| {
            let mean = x.mean_dim(dims, true, None);
            let var = x.var_dim(dims, unbiased, true);
            (x - mean) / (var + EPS).sqrt()
        };
        (rho * norm(&[2, 3]) + (1.0 - rho) * norm(&[1, 2, 3])) * gamma + beta
    }

    #[test]
    fn iln_at_init_is_layer_norm() {
        // rho = 0, gamma = 1, beta = 0: the output is the layer branch alone, unit variance.
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let iln = Iln::new(&vs.root(), 3, Statistics::Unbiased);
        let x = Tensor::arange(2 * 3 * 4 * 4, (Kind::Float, Device::Cpu)).reshape([2, 3, 4, 4]);
        let x = x.sin() * 4.0 + 7.0;
        let y = iln.forward(&x);
        let var = y.var_dim([1i64, 2, 3].as_slice(), true, false);
        assert!((var - 1.0).abs().max().double_value(&[]) < 1e-3);
        let zero = Tensor::zeros([1, 3, 1, 1], (Kind::Float, Device::Cpu));
        let expect = by_definition(&x, &zero, &zero.ones_like(), &zero);
        assert!((y - expect).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn adalin_equals_its_definition_with_the_true_variance() {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let ada = AdaLin::new(&vs.root(), 4);
        tch::no_grad(|| {
            ada.rho
                .shallow_clone()
                .copy_(&Tensor::from_slice(&[0.0f32, 0.3, 0.9, 1.0]).view([1, 4, 1, 1]));
        });
        let opts = (Kind::Float, Device::Cpu);
        // An offset far from zero and channels of very different spread: where a fused form
        // could lose precision, and where a variance of variances would differ from the variance.
        let spread = Tensor::from_slice(&[0.1f32, 1.0, 5.0, 20.0]).view([1, 4, 1, 1]);
        let x = Tensor::randn([2, 4, 6, 5], opts) * spread + 30.0;
        let gamma = Tensor::randn([2, 4], opts);
        let beta = Tensor::randn([2, 4], opts);
        let spatial = |t: &Tensor| t.view([2, 4, 1, 1]);
        let expect = by_definition(&x, &ada.rho, &spatial(&gamma), &spatial(&beta));
        let scale = expect.abs().max().double_value(&[]);
        // The fused form (no autograd) and the term-by-term one (autograd) alike.
        let fused = tch::no_grad(|| ada.forward(&x, &gamma, &beta));
        let traced = ada.forward(&x.set_requires_grad(true), &gamma, &beta);
        assert!(traced.requires_grad() && !fused.requires_grad());
        for y in [fused, traced] {
            assert!((y - &expect).abs().max().double_value(&[]) / scale < 1e-5);
        }
    }

    #[test]
    fn tensorflow_adalin_smooths_rho_and_uses_the_biased_variance() {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let ada = AdaLin::new_tf(&vs.root(), 4, true);
        let rho = Tensor::from_slice(&[0.05f32, 0.3, 1.0, 0.1]).view([1, 4, 1, 1]);
        tch::no_grad(|| ada.rho.shallow_clone().copy_(&rho));
        let opts = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([2, 4, 3, 5], opts) * 3.0 + 1.0;
        let gamma = Tensor::randn([2, 4], opts);
        let beta = Tensor::randn([2, 4], opts);
        let spatial = |t: &Tensor| t.view([2, 4, 1, 1]);
        // rho - 0.1, clipped: 0, 0.2, 0.9, 0.
        let smoothed = Tensor::from_slice(&[0.0f32, 0.2, 0.9, 0.0]).view([1, 4, 1, 1]);
        let expect = by_definition_with(&x, &smoothed, &spatial(&gamma), &spatial(&beta), false);
        for y in [
            tch::no_grad(|| ada.forward(&x, &gamma, &beta)),
            ada.forward(&x.set_requires_grad(true), &gamma, &beta),
        ] {
            assert!((y - &expect).abs().max().double_value(&[]) < 1e-4);
        }
    }
}
