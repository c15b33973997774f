//! Spectral normalisation (Miyato et al. 2018) as `torch.nn.utils.spectral_norm` does it: one
//! power iteration per training forward pass, the singular vectors kept as non-trainable
//! variables `u` and `v` beside the raw weight, so checkpoints carry them like the reference's
//! `weight_u` / `weight_v` buffers.

use std::sync::Mutex;

use tch::nn::Path;
use tch::{Kind, Tensor};

const EPS: f64 = 1e-12;

/// The estimate of a weight's largest singular value.
#[derive(Debug)]
pub(crate) struct SpectralNorm {
    u: Tensor,
    v: Tensor,
}

fn normalize(x: &Tensor) -> Tensor {
    let norm = x.square().sum(Kind::Float).sqrt().clamp_min(EPS);
    x / norm
}

impl SpectralNorm {
    /// `weight` is the raw (trainable) weight; its first dimension is the output size.
    pub(crate) fn new(p: &Path, weight: &Tensor) -> Self {
        let size = weight.size();
        let rows = size[0];
        let cols: i64 = size[1..].iter().product();
        let u = p.zeros_no_train("u", &[rows]);
        let v = p.zeros_no_train("v", &[cols]);
        tch::no_grad(|| {
            let mut u_ = u.shallow_clone();
            let mut v_ = v.shallow_clone();
            u_.copy_(&normalize(&Tensor::randn(
                [rows],
                (Kind::Float, u.device()),
            )));
            v_.copy_(&normalize(&Tensor::randn(
                [cols],
                (Kind::Float, v.device()),
            )));
        });
        SpectralNorm { u, v }
    }

    /// The weight divided by its spectral norm. In training, first one power iteration
    /// refines `u` and `v` in place (gradients flow through the weight only, as in PyTorch).
    pub(crate) fn normalized(&self, weight: &Tensor, train: bool) -> Tensor {
        let rows = weight.size()[0];
        let mat = weight.reshape([rows, -1]);
        if train {
            tch::no_grad(|| {
                let v = normalize(&mat.tr().mv(&self.u));
                let u = normalize(&mat.mv(&v));
                self.v.shallow_clone().copy_(&v);
                self.u.shallow_clone().copy_(&u);
            });
        }
        // Copies, as PyTorch clones them: the next call's in-place power iteration must not
        // change vectors this call's graph still needs for backward.
        let (u, v) = if train {
            (self.u.detach().copy(), self.v.detach().copy())
        } else {
            (self.u.detach(), self.v.detach())
        };
        let sigma = u.dot(&mat.mv(&v));
        weight / sigma
    }
}

/// What a discriminator call does with its singular-vector estimates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpectralCall {
    /// Inference: the estimates stay as they are.
    Eval,
    /// Training: one power iteration refines them first.
    Refine,
    /// Training, a further call in the same step: PyTorch refines again (every call iterates);
    /// TensorFlow's graph reads u once per session run, so its calls in one run share the
    /// first call's iteration.
    Repeat,
}

/// Spectral norm as the authors' TensorFlow code computes it: only `u` is kept (one value per
/// output, like TensorFlow's `u` of shape [1, out]); every forward pass, in training or not, runs
/// one power iteration from it and divides by the estimate that iteration gives; training
/// stores the refined `u`.
#[derive(Debug)]
pub(crate) struct TfSpectralNorm {
    u: Tensor,
    /// `u` as it was before the last refining call: what a repeated call starts from.
    before: Mutex<Option<Tensor>>,
}

impl TfSpectralNorm {
    pub(crate) fn new(p: &Path, outputs: i64) -> Self {
        let u = p.zeros_no_train("u", &[outputs]);
        tch::no_grad(|| {
            // TensorFlow draws u from N(0, 1), unnormalised.
            u.shallow_clone()
                .copy_(&Tensor::randn([outputs], (Kind::Float, u.device())));
        });
        TfSpectralNorm {
            u,
            before: Mutex::new(None),
        }
    }

    /// `weight` is [out, ...]: the singular vectors of its [out, rest] matrix are those of
    /// TensorFlow's [rest, out] one, whatever the order of `rest`.
    pub(crate) fn normalized(&self, weight: &Tensor, call: SpectralCall) -> Tensor {
        let rows = weight.size()[0];
        let mat = weight.reshape([rows, -1]);
        let (u, v) = tch::no_grad(|| {
            let mut before = self.before.lock().unwrap_or_else(|e| e.into_inner());
            let repeated = match call {
                SpectralCall::Repeat => before.as_ref().map(Tensor::shallow_clone),
                _ => None,
            };
            let refines = call == SpectralCall::Refine
                || (call == SpectralCall::Repeat && repeated.is_none());
            let start = repeated.unwrap_or_else(|| self.u.copy());
            let v = normalize(&mat.tr().mv(&start.to_kind(mat.kind())));
            let u = normalize(&mat.mv(&v));
            if refines {
                self.u.shallow_clone().copy_(&u);
                *before = Some(start);
            }
            (u, v)
        });
        let sigma = u.dot(&mat.mv(&v));
        weight / sigma
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tch::{Device, nn::VarStore};

    #[test]
    fn power_iteration_finds_the_largest_singular_value() {
        let vs = VarStore::new(Device::Cpu);
        let w = Tensor::from_slice(&[3.0f32, 0.0, 0.0, 0.0, 1.0, 0.0]).reshape([2, 3]);
        let sn = SpectralNorm::new(&vs.root(), &w);
        let mut out = w.shallow_clone();
        for _ in 0..20 {
            out = sn.normalized(&w, true);
        }
        // sigma_max = 3: the normalised weight has spectral norm 1.
        let top = out.abs().max().double_value(&[]);
        assert!((top - 1.0).abs() < 1e-4, "{top}");
        // In eval mode u and v stay where they are.
        let u_before = sn.u.copy();
        let _ = sn.normalized(&w, false);
        assert!(sn.u.equal(&u_before));
    }
}
