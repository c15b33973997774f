//! The U-GAT-IT discriminators, in the flavour of either official implementation.

mod pytorch;
mod tensorflow;

use tch::Tensor;
use tch::nn::Path;

use crate::config::{Flavour, ModelConfig};
pub use crate::spectral::SpectralCall;
use pytorch::PytorchDiscriminator;
use tensorflow::TensorflowDiscriminator;

/// Patch logits [N, 1, h, w], CAM logits [N, 2] and the attention heatmap [N, 1, h', w'].
#[derive(Debug)]
pub struct DiscriminatorOutput {
    pub logit: Tensor,
    pub cam_logit: Tensor,
    pub heatmap: Tensor,
}

/// A discriminator with `n_layers` layers (7: global, 5: local; the TensorFlow code's `n_dis`
/// of 6 builds the same depths).
#[derive(Debug)]
pub struct Discriminator(Flavoured);

#[derive(Debug)]
enum Flavoured {
    Pytorch(PytorchDiscriminator),
    Tensorflow(TensorflowDiscriminator),
}

impl Discriminator {
    pub fn new(p: &Path, cfg: &ModelConfig, n_layers: i64) -> Self {
        Discriminator(match cfg.flavour {
            Flavour::Pytorch => Flavoured::Pytorch(PytorchDiscriminator::new(p, cfg, n_layers)),
            Flavour::Tensorflow => {
                Flavoured::Tensorflow(TensorflowDiscriminator::new(p, cfg, n_layers))
            }
        })
    }

    /// `train` updates spectral norm's singular vector estimates, as both official codes do in
    /// training.
    pub fn forward(&self, x: &Tensor, train: bool) -> DiscriminatorOutput {
        let call = if train {
            SpectralCall::Refine
        } else {
            SpectralCall::Eval
        };
        self.forward_call(x, call)
    }

    /// A call that says what spectral norm does: [`SpectralCall::Repeat`] for the further calls
    /// of one training step, which each official code treats its own way.
    pub fn forward_call(&self, x: &Tensor, call: SpectralCall) -> DiscriminatorOutput {
        match &self.0 {
            Flavoured::Pytorch(d) => d.forward(x, call != SpectralCall::Eval),
            Flavoured::Tensorflow(d) => d.forward(x, call),
        }
    }
}
