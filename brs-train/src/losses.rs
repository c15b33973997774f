//! The U-GAT-IT losses: LSGAN (mean squared error against 1 for real, 0 for fake) on patch and
//! CAM logits, L1 for cycle and identity, BCE-with-logits for the generators' CAM, all means
//! over every element as PyTorch's default `reduction='mean'`.

use serde::{Deserialize, Serialize};
use tch::{Reduction, Tensor};

/// Mean squared distance of every logit from `target` (1 = real, 0 = fake).
pub(crate) fn lsgan(logit: &Tensor, target: f64) -> Tensor {
    logit.mse_loss(&logit.full_like(target), Reduction::Mean)
}

/// Mean absolute difference.
pub(crate) fn l1(a: &Tensor, b: &Tensor) -> Tensor {
    a.l1_loss(b, Reduction::Mean)
}

/// Binary cross-entropy of sigmoid(logit) against a constant target.
pub(crate) fn bce_logits(logit: &Tensor, target: f64) -> Tensor {
    logit.binary_cross_entropy_with_logits::<&Tensor>(
        &logit.full_like(target),
        None,
        None,
        Reduction::Mean,
    )
}

/// The losses of one iteration, as logged (already weighted sums are `d_loss` and `g_loss`; the
/// parts are sums over both directions without the loss weights).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Losses {
    pub d_loss: f64,
    pub g_loss: f64,
    pub g_adv: f64,
    pub g_cycle: f64,
    pub g_identity: f64,
    pub g_cam: f64,
}

impl Losses {
    /// The sum of two parts of a batch's losses, each already weighted by its share.
    pub(crate) fn plus(&self, other: &Losses) -> Losses {
        Losses {
            d_loss: self.d_loss + other.d_loss,
            g_loss: self.g_loss + other.g_loss,
            g_adv: self.g_adv + other.g_adv,
            g_cycle: self.g_cycle + other.g_cycle,
            g_identity: self.g_identity + other.g_identity,
            g_cam: self.g_cam + other.g_cam,
        }
    }

    /// Names and values in plotting order.
    pub fn series(&self) -> [(&'static str, f64); 6] {
        [
            ("d_loss", self.d_loss),
            ("g_loss", self.g_loss),
            ("g_adv", self.g_adv),
            ("g_cycle", self.g_cycle),
            ("g_identity", self.g_identity),
            ("g_cam", self.g_cam),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tch::Kind;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn losses_match_their_definitions() {
        let x = t(&[0.0, 2.0, -1.0, 1.0]);
        // ((0-1)^2 + (2-1)^2 + (-1-1)^2 + 0) / 4 = 1.5
        assert!((lsgan(&x, 1.0).double_value(&[]) - 1.5).abs() < 1e-6);
        assert!((lsgan(&x, 0.0).double_value(&[]) - 1.5).abs() < 1e-6);
        assert!((l1(&x, &x.zeros_like()).double_value(&[]) - 1.0).abs() < 1e-6);
        // BCE(0 logit, any target) = ln 2; a large positive logit against 1 costs almost nothing.
        let zero = t(&[0.0, 0.0]);
        assert!((bce_logits(&zero, 1.0).double_value(&[]) - 2f64.ln()).abs() < 1e-6);
        assert!(bce_logits(&t(&[30.0]), 1.0).double_value(&[]) < 1e-6);
        assert!(bce_logits(&t(&[30.0]), 0.0).double_value(&[]) > 29.0);
        assert_eq!(lsgan(&x, 1.0).kind(), Kind::Float);
    }
}
