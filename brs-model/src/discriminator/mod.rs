//! The U-GAT-IT discriminators, in the flavour of either official implementation.

mod pytorch;
mod tensorflow;

use tch::Tensor;
use tch::nn::Path;

use crate::config::{Flavour, ModelConfig};
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
        match &self.0 {
            Flavoured::Pytorch(d) => d.forward(x, train),
            Flavoured::Tensorflow(d) => d.forward(x, train),
        }
    }
}
