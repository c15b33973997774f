//! The U-GAT-IT generator of one direction, in the flavour of either official implementation.

mod pytorch;
mod tensorflow;

use tch::Tensor;
use tch::nn::Path;

use crate::config::{Flavour, ModelConfig};
use pytorch::PytorchGenerator;
use tensorflow::TensorflowGenerator;

/// What the generator returns: the translated image in [-1, 1], the CAM logits (gap, gmp) and
/// the attention heatmap (channel sum of the attended features).
#[derive(Debug)]
pub struct GeneratorOutput {
    pub image: Tensor,
    pub cam_logit: Tensor,
    pub heatmap: Tensor,
}

/// The generator of one direction (A to B, or B to A).
#[derive(Debug)]
pub struct Generator(Flavoured);

#[derive(Debug)]
enum Flavoured {
    Pytorch(PytorchGenerator),
    Tensorflow(TensorflowGenerator),
}

impl Generator {
    /// Creates the variables under `p`, in the flavour `cfg` names. The config must be valid
    /// (`ModelConfig::validate`).
    pub fn new(p: &Path, cfg: &ModelConfig) -> Self {
        match cfg.flavour {
            Flavour::Pytorch => Generator(Flavoured::Pytorch(PytorchGenerator::new(p, cfg))),
            Flavour::Tensorflow => {
                Generator(Flavoured::Tensorflow(TensorflowGenerator::new(p, cfg)))
            }
        }
    }

    /// Translates a batch [N, C, S, S] in [-1, 1].
    pub fn forward(&self, x: &Tensor) -> GeneratorOutput {
        match &self.0 {
            Flavoured::Pytorch(g) => g.forward(x),
            Flavoured::Tensorflow(g) => g.forward(x),
        }
    }

    /// Clips every AdaLIN and ILN rho to [0, 1], as both official codes do after each G step
    /// (PyTorch by hand, TensorFlow by the variables' constraint).
    pub fn clip_rho(&self) {
        tch::no_grad(|| {
            let rhos: Vec<&Tensor> = match &self.0 {
                Flavoured::Pytorch(g) => g.rhos().collect(),
                Flavoured::Tensorflow(g) => g.rhos().collect(),
            };
            for rho in rhos {
                let _ = rho.shallow_clone().clamp_(0.0, 1.0);
            }
        });
    }
}
