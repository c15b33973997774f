//! Instance norm, ILN and AdaLIN as the official PyTorch U-GAT-IT computes them.
//!
//! The official code's statistics are not the textbook ones: its "instance variance" is
//! `var(var(x, H), W)` (the variance over columns of the per-column variances over rows) and its
//! "layer variance" is `var(var(var(x, C), H), W)`, all unbiased, with eps 1e-5. We reproduce that
//! exactly, because every checkpoint trained with the reference learned its rho, gamma and beta
//! against these statistics: the textbook variance would change its output.

use tch::Tensor;
use tch::nn::{Init, Path};

const EPS: f64 = 1e-5;

/// InstanceNorm2d without affine parameters (PyTorch's default): biased variance over H and W.
pub(crate) fn instance_norm(x: &Tensor) -> Tensor {
    let mean = x.mean_dim([2i64, 3].as_slice(), true, None);
    let var = x.var_dim([2i64, 3].as_slice(), false, true);
    (x - mean) / (var + EPS).sqrt()
}

/// Mixes the reference's instance- and layer-normalised maps by rho (per channel).
fn mix_in_ln(x: &Tensor, rho: &Tensor) -> Tensor {
    let in_mean = x.mean_dim([2i64, 3].as_slice(), true, None);
    let in_var = x
        .var_dim([2i64].as_slice(), true, true)
        .var_dim([3i64].as_slice(), true, true);
    let ln_mean = x.mean_dim([1i64, 2, 3].as_slice(), true, None);
    let ln_var = x
        .var_dim([1i64].as_slice(), true, true)
        .var_dim([2i64].as_slice(), true, true)
        .var_dim([3i64].as_slice(), true, true);
    let out_in = (x - in_mean) / (in_var + EPS).sqrt();
    let out_ln = (x - ln_mean) / (ln_var + EPS).sqrt();
    rho * out_in + (1.0 - rho) * out_ln
}

/// Adaptive Layer-Instance Normalisation: gamma and beta come from the generator's MLP.
#[derive(Debug)]
pub(crate) struct AdaLin {
    pub(crate) rho: Tensor,
}

impl AdaLin {
    pub(crate) fn new(p: &Path, channels: i64) -> Self {
        AdaLin {
            rho: p.var("rho", &[1, channels, 1, 1], Init::Const(0.9)),
        }
    }

    /// `gamma` and `beta` are [N, C].
    pub(crate) fn forward(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
        mix_in_ln(x, &self.rho) * gamma.unsqueeze(2).unsqueeze(3) + beta.unsqueeze(2).unsqueeze(3)
    }
}

/// Layer-Instance Normalisation with learned rho, gamma and beta (the decoder's up-sampling blocks).
#[derive(Debug)]
pub(crate) struct Iln {
    pub(crate) rho: Tensor,
    gamma: Tensor,
    beta: Tensor,
}

impl Iln {
    pub(crate) fn new(p: &Path, channels: i64) -> Self {
        let shape = [1, channels, 1, 1];
        Iln {
            rho: p.var("rho", &shape, Init::Const(0.0)),
            gamma: p.var("gamma", &shape, Init::Const(1.0)),
            beta: p.var("beta", &shape, Init::Const(0.0)),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        mix_in_ln(x, &self.rho) * &self.gamma + &self.beta
    }
}

#[cfg(test)]
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

    #[test]
    fn iln_at_init_is_layer_norm_like_the_reference() {
        // rho = 0, gamma = 1, beta = 0: the output is the reference's layer branch alone.
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let iln = Iln::new(&vs.root(), 3);
        let x = Tensor::arange(2 * 3 * 4 * 4, (Kind::Float, Device::Cpu)).reshape([2, 3, 4, 4]);
        let x = x.sin() * 4.0;
        let y = iln.forward(&x);
        let ln_mean = x.mean_dim([1i64, 2, 3].as_slice(), true, None);
        let ln_var = x
            .var_dim([1i64].as_slice(), true, true)
            .var_dim([2i64].as_slice(), true, true)
            .var_dim([3i64].as_slice(), true, true);
        let expect = (&x - ln_mean) / (ln_var + EPS).sqrt();
        assert!((y - expect).abs().max().double_value(&[]) < 1e-5);
    }
}
