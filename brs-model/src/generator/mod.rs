//! The U-GAT-IT generator of one direction, in the flavour of either official implementation.

mod pytorch;
mod tensorflow;

use tch::Tensor;
use tch::nn::Path;

use crate::config::{Flavour, ModelConfig};
use crate::layers::Linear;
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

/// The MLP that turns the attended map into AdaLIN's gamma and beta: two ReLU layers over the
/// pooled (light) or flattened (full) map, then one head each. Only the layers differ by flavour.
#[derive(Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    gamma: Linear,
    beta: Linear,
    light: bool,
}

impl Mlp {
    fn new(p: &Path, cfg: &ModelConfig, layer: fn(&Path, i64, i64) -> Linear) -> Self {
        let deep = 4 * cfg.ch;
        let fc1_in = if cfg.light {
            deep
        } else {
            cfg.bottleneck() * cfg.bottleneck() * deep
        };
        Mlp {
            fc1: layer(&(p / "fc1"), fc1_in, deep),
            fc2: layer(&(p / "fc2"), deep, deep),
            gamma: layer(&(p / "gamma"), deep, deep),
            beta: layer(&(p / "beta"), deep, deep),
            light: cfg.light,
        }
    }

    /// (gamma, beta), each [N, 4 * ch].
    fn forward(&self, h: &Tensor) -> (Tensor, Tensor) {
        let n = h.size()[0];
        let style = if self.light {
            h.adaptive_avg_pool2d([1, 1]).view([n, -1])
        } else {
            h.view([n, -1])
        };
        let style = self.fc2.forward(&self.fc1.forward(&style).relu()).relu();
        (self.gamma.forward(&style), self.beta.forward(&style))
    }
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
