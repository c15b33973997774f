//! The six networks and their two Adam optimizers on one device, and one training iteration over
//! them: the reference's D step then G step, exactly, with the work it does twice done once.
//!
//! Savings over the reference, all mathematically exact:
//! - The G step's `fake_A2B` and `fake_B2A` equal the D step's (the generators do not change in
//!   the D step), so they are computed once with autograd on, detached for the D loss and
//!   reused for the G loss. The reference runs each generator twice on the same input and also
//!   backpropagates the D loss through both generators, only to zero those gradients.
//! - Calls of one generator whose inputs are available together run as one batch: genA2B on
//!   [real_A; real_B] gives fake_A2B and the identity fake_B2B; genB2A on
//!   [real_B; real_A; fake_A2B] gives fake_B2A, fake_A2A and the cycle fake_A2B2A. Every layer
//!   of the generator (instance/layer norms, CAM, MLP) works per sample, so batching is exact
//!   (up to float summation order). Six generator passes per iteration instead of eight, in
//!   three calls instead of eight.
//! - The discriminators are NOT batched: spectral norm runs one power iteration per call, so a
//!   real and a fake call refine u and v twice, and the fake call's sigma uses the refined
//!   vectors. One batched call would do one iteration and share one sigma, changing training.
//!   (Reproducing both with one call would need per-sample weight scaling inside brs-model's
//!   discriminator, which is private.) Each D call is backpropagated before the next call of the
//!   same D, because the power iteration updates u and v in place.
//! - In the G step the discriminators' parameters are frozen, so no gradients are computed for
//!   weights the G step does not update (the reference computes and then discards them).

use brs_model::precision::store_channels_last;
use brs_model::{Discriminator, NetworkKind, Networks};
use tch::{Device, Tensor};

use crate::config::TrainConfig;
use crate::error::Result;
use crate::losses::{Losses, bce_logits, l1, lsgan};
use crate::optim::Adam;

/// The networks, an optimizer for the generators and one for the discriminators.
pub(crate) struct Models {
    pub(crate) nets: Networks,
    pub(crate) g_opt: Adam,
    pub(crate) d_opt: Adam,
    d_params: Vec<Tensor>,
}

/// Trainable variables of some networks, named `<network>.<variable>`, sorted.
fn trainable(nets: &Networks, kinds: &[NetworkKind]) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for &kind in kinds {
        let mut vars: Vec<(String, Tensor)> = nets
            .store(kind)
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(name, t)| (format!("{}.{name}", kind.name()), t))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        out.extend(vars);
    }
    out
}

const GENERATORS: [NetworkKind; 2] = [NetworkKind::GenA2B, NetworkKind::GenB2A];
const DISCRIMINATORS: [NetworkKind; 4] = [
    NetworkKind::DisGA,
    NetworkKind::DisGB,
    NetworkKind::DisLA,
    NetworkKind::DisLB,
];

impl Models {
    /// Fresh networks initialised from torch's generator seeded with `cfg.seed`, on `device`.
    pub(crate) fn new(cfg: &TrainConfig, device: Device) -> Result<Self> {
        tch::manual_seed(cfg.seed as i64);
        let nets = Networks::new(&cfg.model(), device)?;
        let g_opt = Adam::new(trainable(&nets, &GENERATORS), cfg.weight_decay);
        let d_opt = Adam::new(trainable(&nets, &DISCRIMINATORS), cfg.weight_decay);
        let d_params = trainable(&nets, &DISCRIMINATORS)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        Ok(Models {
            nets,
            g_opt,
            d_opt,
            d_params,
        })
    }

    /// Stores every network's weights channels-last (NHWC).
    pub(crate) fn make_channels_last(&mut self) {
        for (_, vs) in self.nets.stores() {
            store_channels_last(vs);
        }
    }

    fn set_discriminators_trainable(&self, on: bool) {
        for p in &self.d_params {
            let _ = p.set_requires_grad(on);
        }
    }

    /// One training iteration (D step, G step, rho clipping) at learning rate `lr` on a batch of
    /// each domain, each [N, C, S, S] in [-1, 1] on the models' device; returns its losses.
    pub(crate) fn step(
        &mut self,
        cfg: &TrainConfig,
        lr: f64,
        real_a: &Tensor,
        real_b: &Tensor,
    ) -> Result<Losses> {
        let na = real_a.size()[0];
        let nb = real_b.size()[0];
        let nets = &self.nets;
        let autocast = cfg.autocast;

        // Generators: three batched calls give every image both steps need.
        let (a2b, b2a, fake_b2a2b) = tch::autocast(autocast, || {
            let a2b = nets.gen_a2b.forward(&Tensor::cat(&[real_a, real_b], 0));
            let fake_a2b = a2b.image.narrow(0, 0, na);
            let b2a = nets
                .gen_b2a
                .forward(&Tensor::cat(&[real_b, real_a, &fake_a2b], 0));
            let fake_b2a = b2a.image.narrow(0, 0, nb);
            let b2a2b = nets.gen_a2b.forward(&fake_b2a).image;
            (a2b, b2a, b2a2b)
        });
        let fake_a2b = a2b.image.narrow(0, 0, na);
        let fake_b2b = a2b.image.narrow(0, na, nb);
        let cam_a2b = a2b.cam_logit.narrow(0, 0, na);
        let cam_b2b = a2b.cam_logit.narrow(0, na, nb);
        let fake_b2a = b2a.image.narrow(0, 0, nb);
        let fake_a2a = b2a.image.narrow(0, nb, na);
        let fake_a2b2a = b2a.image.narrow(0, nb + na, na);
        let cam_b2a = b2a.cam_logit.narrow(0, 0, nb);
        let cam_a2a = b2a.cam_logit.narrow(0, nb, na);

        // D step.
        self.d_opt.zero_grad();
        let detached_a2b = fake_a2b.detach();
        let detached_b2a = fake_b2a.detach();
        let pairs: [(&Discriminator, &Tensor, &Tensor); 4] = [
            (&nets.dis_ga, real_a, &detached_b2a),
            (&nets.dis_la, real_a, &detached_b2a),
            (&nets.dis_gb, real_b, &detached_a2b),
            (&nets.dis_lb, real_b, &detached_a2b),
        ];
        let mut d_loss = 0.0;
        for (d, real, fake) in pairs {
            for (x, target) in [(real, 1.0), (fake, 0.0)] {
                let loss = tch::autocast(autocast, || {
                    let o = d.forward(x, true);
                    (lsgan(&o.logit, target) + lsgan(&o.cam_logit, target)) * cfg.adv_weight
                });
                d_loss += loss.double_value(&[]);
                loss.backward();
            }
        }
        self.d_opt.step(lr);

        // G step, through the updated discriminators (their weights frozen).
        self.set_discriminators_trainable(false);
        let adv = |d: &Discriminator, fake: &Tensor| {
            tch::autocast(autocast, || {
                let o = d.forward(fake, true);
                lsgan(&o.logit, 1.0) + lsgan(&o.cam_logit, 1.0)
            })
        };
        let g_adv = adv(&nets.dis_ga, &fake_b2a)
            + adv(&nets.dis_la, &fake_b2a)
            + adv(&nets.dis_gb, &fake_a2b)
            + adv(&nets.dis_lb, &fake_a2b);
        let g_cycle = l1(&fake_a2b2a, real_a) + l1(&fake_b2a2b, real_b);
        let g_identity = l1(&fake_a2a, real_a) + l1(&fake_b2b, real_b);
        let g_cam = bce_logits(&cam_b2a, 1.0)
            + bce_logits(&cam_a2a, 0.0)
            + bce_logits(&cam_a2b, 1.0)
            + bce_logits(&cam_b2b, 0.0);
        let g_loss = &g_adv * cfg.adv_weight
            + &g_cycle * cfg.cycle_weight
            + &g_identity * cfg.identity_weight
            + &g_cam * cfg.cam_weight;
        self.g_opt.zero_grad();
        let backward = g_loss.f_backward();
        self.set_discriminators_trainable(true);
        backward?;
        self.g_opt.step(lr);
        self.nets.gen_a2b.clip_rho();
        self.nets.gen_b2a.clip_rho();

        Ok(Losses {
            d_loss,
            g_loss: g_loss.double_value(&[]),
            g_adv: g_adv.double_value(&[]),
            g_cycle: g_cycle.double_value(&[]),
            g_identity: g_identity.double_value(&[]),
            g_cam: g_cam.double_value(&[]),
        })
    }
}
