//! Adam with L2 weight decay, computed as `torch.optim.Adam` computes it (single-tensor path),
//! with its moments and step count open so checkpoints carry them and resume is exact.
//!
//! tch's `nn::Optimizer` hides the moments, which is why the reference (and anyone on tch) loses
//! them on resume. Per step, for each parameter p with gradient g:
//! `g += wd * p; m = lerp(m, g, 1 - b1); v = b2 * v + (1 - b2) * g * g;`
//! `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
//!
//! The TensorFlow flavour follows the authors' TensorFlow code instead: `tf.train.AdamOptimizer`
//! adds eps to `sqrt(v)` before the bias correction (`p -= lr * sqrt(1 - b2^t) / (1 - b1^t) *
//! m / (sqrt(v) + eps)`), and the decay is the gradient of the code's L2 regularizer
//! (`scale * sum(w^2) / 2`, scale 1e-4), which covers kernels only: no biases, norms or rho.

use std::collections::BTreeMap;

use brs_model::checkpoint::{adam_moment_key, adam_step_key};
use tch::{Kind, Tensor};

use crate::error::{Result, TrainError};

/// Which official code's Adam to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdamStyle {
    /// `torch.optim.Adam` with weight decay on every parameter.
    Torch,
    /// `tf.train.AdamOptimizer` plus an L2 loss on the kernels (variables named `*.weight`).
    Tensorflow,
}

/// One optimizer over a named set of parameters (e.g. both generators).
#[derive(Debug)]
pub(crate) struct Adam {
    params: Vec<(String, Tensor)>,
    /// Whether weight decay applies to each parameter.
    decayed: Vec<bool>,
    style: AdamStyle,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl Adam {
    /// The reference's settings: betas (0.5, 0.999), eps 1e-8.
    pub(crate) fn new(params: Vec<(String, Tensor)>, weight_decay: f64, style: AdamStyle) -> Self {
        let zeros = |p: &Tensor| p.zeros_like().detach();
        Adam {
            decayed: params
                .iter()
                .map(|(name, _)| style == AdamStyle::Torch || name.ends_with(".weight"))
                .collect(),
            style,
            m: params.iter().map(|(_, p)| zeros(p)).collect(),
            v: params.iter().map(|(_, p)| zeros(p)).collect(),
            params,
            step: 0,
            beta1: 0.5,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    #[cfg(test)]
    pub(crate) fn step_count(&self) -> u64 {
        self.step
    }

    /// The parameters, in the order they were given.
    pub(crate) fn params(&self) -> impl Iterator<Item = &Tensor> {
        self.params.iter().map(|(_, p)| p)
    }

    /// Clears the gradients of every parameter.
    pub(crate) fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update with learning rate `lr`; parameters without a gradient are left alone, as
    /// torch skips them.
    pub(crate) fn step(&mut self, lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        let step_size = match self.style {
            AdamStyle::Torch => lr / bias1,
            AdamStyle::Tensorflow => lr * bias2_sqrt / bias1,
        };
        tch::no_grad(|| {
            for (((_, p), decayed), (m, v)) in self
                .params
                .iter_mut()
                .zip(&self.decayed)
                .zip(self.m.iter_mut().zip(self.v.iter_mut()))
            {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = if self.weight_decay != 0.0 && *decayed {
                    &g + &*p * self.weight_decay
                } else {
                    g
                };
                let _ = m.lerp_(&g, 1.0 - self.beta1);
                let _ = v.g_mul_scalar_(self.beta2);
                let _ = v.addcmul_(&(&g * (1.0 - self.beta2)), &g);
                let denom = match self.style {
                    AdamStyle::Torch => v.sqrt() / bias2_sqrt + self.eps,
                    AdamStyle::Tensorflow => v.sqrt() + self.eps,
                };
                // value * (m / denom), the association torch's addcdiv uses.
                let _ = p.g_add_(&((&*m / denom) * -step_size));
            }
        });
    }

    /// Moments as named tensors (`<prefix>/<param>/m` and `/v`) plus the step count.
    pub(crate) fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.params.len() + 1);
        for ((name, _), (m, v)) in self.params.iter().zip(self.m.iter().zip(&self.v)) {
            out.push((adam_moment_key(prefix, name, "m"), m.shallow_clone()));
            out.push((adam_moment_key(prefix, name, "v"), v.shallow_clone()));
        }
        out.push((
            adam_step_key(prefix),
            Tensor::from_slice(&[self.step as i64]),
        ));
        out
    }

    /// Restores what `state` saved; every moment must be present with the parameter's shape.
    pub(crate) fn load_state(
        &mut self,
        prefix: &str,
        saved: &BTreeMap<String, Tensor>,
    ) -> Result<()> {
        let get = |key: String, like: &Tensor| -> Result<Tensor> {
            let t = saved
                .get(&key)
                .ok_or_else(|| TrainError::OptimizerState(format!("lacks {key}")))?;
            if t.size() != like.size() {
                return Err(TrainError::OptimizerState(format!(
                    "optimizer state {key} has shape {:?}, the parameter {:?}",
                    t.size(),
                    like.size()
                )));
            }
            Ok(t.to_kind(like.kind()).to_device(like.device()))
        };
        let mut m = Vec::with_capacity(self.params.len());
        let mut v = Vec::with_capacity(self.params.len());
        for (name, p) in &self.params {
            m.push(get(adam_moment_key(prefix, name, "m"), p)?);
            v.push(get(adam_moment_key(prefix, name, "v"), p)?);
        }
        let step_key = adam_step_key(prefix);
        let step = saved
            .get(&step_key)
            .ok_or_else(|| TrainError::OptimizerState(format!("lacks {step_key}")))?
            .to_kind(Kind::Int64)
            .int64_value(&[0]);
        self.m = m;
        self.v = v;
        self.step = u64::try_from(step)
            .map_err(|_| TrainError::OptimizerState(format!("{step_key} is negative")))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Minimises a fixed quadratic with our Adam; returns the parameter after each step.
    fn run(steps: usize, wd: f64, lrs: &[f64]) -> Vec<Vec<f64>> {
        let p = Tensor::from_slice(&[1.0f32, -2.0, 0.5, 3.0]).set_requires_grad(true);
        let target = Tensor::from_slice(&[0.3f32, 0.1, -0.7, 2.0]);
        let mut adam = Adam::new(vec![("p".into(), p.shallow_clone())], wd, AdamStyle::Torch);
        let mut out = Vec::new();
        for i in 0..steps {
            adam.zero_grad();
            let loss = ((&p - &target).pow_tensor_scalar(2) * &target.exp()).sum(Kind::Float);
            loss.backward();
            adam.step(lrs[i % lrs.len()]);
            out.push(Vec::<f64>::try_from(&p.to_kind(Kind::Double)).unwrap_or_default());
        }
        out
    }

    #[test]
    fn matches_hand_computed_first_step() {
        // Step 1 moves every parameter by lr against its gradient's sign: m = 0.5 g, v = 0.001 g^2, m_hat = g, v_hat = g^2 -> p -= lr * g / (|g| + eps).
        let got = run(1, 0.0, &[0.1]);
        let expect = [1.0 - 0.1, -2.0 + 0.1, 0.5 - 0.1, 3.0 - 0.1];
        for (g, e) in got[0].iter().zip(expect) {
            assert!((g - e).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn matches_torch_optim_adam() {
        let Ok(python) = std::env::var("BRS_PYTHON") else {
            panic!(
                "BRS_PYTHON is not set: run through cargo (scripts/setup writes .cargo/config.toml)"
            );
        };
        let script = r#"
import torch, json
p = torch.tensor([1.0, -2.0, 0.5, 3.0], requires_grad=True)
t = torch.tensor([0.3, 0.1, -0.7, 2.0])
opt = torch.optim.Adam([p], lr=1e-2, betas=(0.5, 0.999), weight_decay=0.05)
out = []
for i in range(12):
    for g in opt.param_groups: g['lr'] = [1e-2, 3e-3, 5e-2][i % 3]
    opt.zero_grad()
    (((p - t) ** 2) * t.exp()).sum().backward()
    opt.step()
    out.append(p.tolist())
print(json.dumps(out))
"#;
        let output = std::process::Command::new(python)
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let torch: Vec<Vec<f64>> = serde_json::from_slice(&output.stdout).unwrap();
        let ours = run(12, 0.05, &[1e-2, 3e-3, 5e-2]);
        for (step, (a, b)) in ours.iter().zip(&torch).enumerate() {
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() < 1e-6,
                    "step {}: ours {a:?} torch {b:?}",
                    step + 1
                );
            }
        }
    }

    #[test]
    fn state_round_trips_and_resumes_exactly() {
        let make = || Tensor::from_slice(&[1.0f32, -1.0]).set_requires_grad(true);
        let loss = |p: &Tensor| (p * p * 3.0 + p).sum(Kind::Float);
        let (a, b) = (make(), make());
        let mut straight = Adam::new(
            vec![("w".into(), a.shallow_clone())],
            1e-4,
            AdamStyle::Torch,
        );
        for _ in 0..5 {
            straight.zero_grad();
            loss(&a).backward();
            straight.step(0.01);
        }
        let mut first = Adam::new(
            vec![("w".into(), b.shallow_clone())],
            1e-4,
            AdamStyle::Torch,
        );
        for _ in 0..2 {
            first.zero_grad();
            loss(&b).backward();
            first.step(0.01);
        }
        let saved: BTreeMap<String, Tensor> = first.state("G").into_iter().collect();
        let mut second = Adam::new(
            vec![("w".into(), b.shallow_clone())],
            1e-4,
            AdamStyle::Torch,
        );
        second.load_state("G", &saved).unwrap();
        assert_eq!(second.step_count(), 2);
        for _ in 0..3 {
            second.zero_grad();
            loss(&b).backward();
            second.step(0.01);
        }
        assert!(a.equal(&b), "{a} vs {b}");
        let missing = BTreeMap::new();
        let err = second.load_state("G", &missing).unwrap_err().to_string();
        assert!(err.contains("G/w/m"), "{err}");
    }
}
