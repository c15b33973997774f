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
//!
//! With `replicas > 1` the batch is split between the networks here and copies of them on worker
//! threads (`replica`): each computes its part's losses, weighted by its share of the batch, and
//! their gradients, which add up to the whole batch's (every layer works per sample, above).
//! The passes below are therefore written for a share of a batch: `Shares` weights every loss
//! term by the part of A or of B it averages over (1 and 1 for a whole batch, an exact no-op).

use brs_model::checkpoint::adam_param_name;
use brs_model::config::Flavour;
use brs_model::discriminator::SpectralCall;
use brs_model::precision::store_channels_last;
use brs_model::{Discriminator, GeneratorOutput, NetworkKind, Networks};
use tch::{Device, Tensor};

use crate::config::TrainConfig;
use crate::error::Result;
use crate::losses::{Losses, bce_logits, l1, lsgan};
use crate::optim::{Adam, AdamStyle};
use crate::replica::Replica;

/// The networks, an optimizer for the generators and one for the discriminators, and the
/// replicas that share each batch with them.
pub(crate) struct Models {
    pub(crate) nets: Networks,
    pub(crate) g_opt: Adam,
    pub(crate) d_opt: Adam,
    d_params: Vec<Tensor>,
    replicas: Vec<Replica>,
}

/// Trainable variables of some networks, named `<network>.<variable>`, sorted.
pub(crate) fn trainable(nets: &Networks, kinds: &[NetworkKind]) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for &kind in kinds {
        let mut vars: Vec<(String, Tensor)> = nets
            .store(kind)
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(name, t)| (adam_param_name(kind.name(), &name), t))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        out.extend(vars);
    }
    out
}

pub(crate) const GENERATORS: [NetworkKind; 2] = [NetworkKind::GenA2B, NetworkKind::GenB2A];
pub(crate) const DISCRIMINATORS: [NetworkKind; 4] = [
    NetworkKind::DisGA,
    NetworkKind::DisGB,
    NetworkKind::DisLA,
    NetworkKind::DisLB,
];

/// The fraction of the batch's A images and of its B images a pass works on: the weight of the
/// loss terms that average over A images, and of those that average over B images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Shares {
    pub(crate) a: f64,
    pub(crate) b: f64,
}

/// `loss * weight`, without an operation when the weight is 1 (a whole batch).
fn weighted(loss: Tensor, weight: f64) -> Tensor {
    if weight == 1.0 { loss } else { loss * weight }
}

/// The generators' outputs the G step needs after the D step.
pub(crate) struct Generated {
    a2b: GeneratorOutput,
    b2a: GeneratorOutput,
    fake_b2a2b: Tensor,
    na: i64,
    nb: i64,
}

/// The generators' three batched calls, then the D step's losses on `real_a` and `real_b`
/// backpropagated into the discriminators' gradients (which the caller zeroes and applies).
/// Returns the generated images and the (weighted) D loss.
pub(crate) fn generate_and_judge(
    nets: &Networks,
    cfg: &TrainConfig,
    real_a: &Tensor,
    real_b: &Tensor,
    shares: Shares,
) -> (Generated, f64) {
    let na = real_a.size()[0];
    let nb = real_b.size()[0];
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
    let detached_a2b = a2b.image.narrow(0, 0, na).detach();
    let detached_b2a = b2a.image.narrow(0, 0, nb).detach();
    // (discriminator, real images, their share, fake images, their share)
    let pairs: [(&Discriminator, &Tensor, f64, &Tensor, f64); 4] = [
        (&nets.dis_ga, real_a, shares.a, &detached_b2a, shares.b),
        (&nets.dis_la, real_a, shares.a, &detached_b2a, shares.b),
        (&nets.dis_gb, real_b, shares.b, &detached_a2b, shares.a),
        (&nets.dis_lb, real_b, shares.b, &detached_a2b, shares.a),
    ];
    let mut d_loss = 0.0;
    for (d, real, real_share, fake, fake_share) in pairs {
        let calls = [
            (real, 1.0, real_share, SpectralCall::Refine),
            (fake, 0.0, fake_share, SpectralCall::Repeat),
        ];
        for (x, target, share, call) in calls {
            let loss = tch::autocast(autocast, || {
                let o = d.forward_call(x, call);
                let loss = (lsgan(&o.logit, target) + lsgan(&o.cam_logit, target)) * cfg.adv_weight;
                weighted(loss, share)
            });
            d_loss += loss.double_value(&[]);
            loss.backward();
        }
    }
    (
        Generated {
            a2b,
            b2a,
            fake_b2a2b,
            na,
            nb,
        },
        d_loss,
    )
}

/// The G step's losses through the (updated) discriminators, whose trainable weights
/// `d_params` are frozen meanwhile, backpropagated into the generators' gradients (which the
/// caller zeroes and applies). Returns the (weighted) losses; `d_loss` is left 0.
pub(crate) fn backpropagate_generators(
    nets: &Networks,
    d_params: &[Tensor],
    cfg: &TrainConfig,
    generated: &Generated,
    real_a: &Tensor,
    real_b: &Tensor,
    shares: Shares,
) -> Result<Losses> {
    let Generated {
        a2b,
        b2a,
        fake_b2a2b,
        na,
        nb,
    } = generated;
    let (na, nb) = (*na, *nb);
    let fake_a2b = a2b.image.narrow(0, 0, na);
    let fake_b2b = a2b.image.narrow(0, na, nb);
    let cam_a2b = a2b.cam_logit.narrow(0, 0, na);
    let cam_b2b = a2b.cam_logit.narrow(0, na, nb);
    let fake_b2a = b2a.image.narrow(0, 0, nb);
    let fake_a2a = b2a.image.narrow(0, nb, na);
    let fake_a2b2a = b2a.image.narrow(0, nb + na, na);
    let cam_b2a = b2a.cam_logit.narrow(0, 0, nb);
    let cam_a2a = b2a.cam_logit.narrow(0, nb, na);
    let (wa, wb) = (shares.a, shares.b);

    let set_frozen = |frozen: bool| {
        for p in d_params {
            let _ = p.set_requires_grad(!frozen);
        }
    };
    set_frozen(true);
    let adv = |d: &Discriminator, fake: &Tensor, share: f64| {
        tch::autocast(cfg.autocast, || {
            let o = d.forward(fake, true);
            weighted(lsgan(&o.logit, 1.0) + lsgan(&o.cam_logit, 1.0), share)
        })
    };
    let g_adv = adv(&nets.dis_ga, &fake_b2a, wb)
        + adv(&nets.dis_la, &fake_b2a, wb)
        + adv(&nets.dis_gb, &fake_a2b, wa)
        + adv(&nets.dis_lb, &fake_a2b, wa);
    let g_cycle = weighted(l1(&fake_a2b2a, real_a), wa) + weighted(l1(fake_b2a2b, real_b), wb);
    let g_identity = weighted(l1(&fake_a2a, real_a), wa) + weighted(l1(&fake_b2b, real_b), wb);
    let g_cam = weighted(bce_logits(&cam_b2a, 1.0), wb)
        + weighted(bce_logits(&cam_a2a, 0.0), wa)
        + weighted(bce_logits(&cam_a2b, 1.0), wa)
        + weighted(bce_logits(&cam_b2b, 0.0), wb);
    let g_loss = &g_adv * cfg.adv_weight
        + &g_cycle * cfg.cycle_weight
        + &g_identity * cfg.identity_weight
        + &g_cam * cfg.cam_weight;
    let backward = g_loss.f_backward();
    set_frozen(false);
    backward?;
    Ok(Losses {
        d_loss: 0.0,
        g_loss: g_loss.double_value(&[]),
        g_adv: g_adv.double_value(&[]),
        g_cycle: g_cycle.double_value(&[]),
        g_identity: g_identity.double_value(&[]),
        g_cam: g_cam.double_value(&[]),
    })
}

/// Stores every network's weights of `nets` channels-last (NHWC).
pub(crate) fn nets_channels_last(nets: &Networks) {
    for (_, vs) in nets.stores() {
        store_channels_last(vs);
    }
}

/// Splits `n` images into at most `parts` nearly equal runs of at least one: (start, length).
fn split(n: i64, parts: usize) -> Vec<(i64, i64)> {
    let parts = (parts as i64).clamp(1, n.max(1));
    let (base, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|k| {
            let len = base + i64::from(k < extra);
            let run = (start, len);
            start += len;
            run
        })
        .collect()
}

impl Models {
    /// Fresh networks initialised from torch's generator seeded with `cfg.seed`, on `device`.
    pub(crate) fn new(cfg: &TrainConfig, device: Device) -> Result<Self> {
        tch::manual_seed(cfg.seed as i64);
        let nets = Networks::new(&cfg.model(), device)?;
        let style = match cfg.flavour {
            Flavour::Pytorch => AdamStyle::Torch,
            Flavour::Tensorflow => AdamStyle::Tensorflow,
        };
        let g_opt = Adam::new(trainable(&nets, &GENERATORS), cfg.weight_decay, style);
        let d_opt = Adam::new(trainable(&nets, &DISCRIMINATORS), cfg.weight_decay, style);
        let d_params = trainable(&nets, &DISCRIMINATORS)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        Ok(Models {
            nets,
            g_opt,
            d_opt,
            d_params,
            replicas: Vec::new(),
        })
    }

    /// Stores every network's weights channels-last (NHWC).
    pub(crate) fn make_channels_last(&mut self) {
        nets_channels_last(&self.nets);
    }

    /// Starts `cfg.replicas - 1` worker threads, each with a copy of the networks as they are
    /// now (after any resume), in the same memory layout, to share every batch with this thread.
    pub(crate) fn start_replicas(&mut self, cfg: &TrainConfig, device: Device) -> Result<()> {
        for index in 1..cfg.replicas {
            self.replicas
                .push(Replica::start(index, cfg, device, &self.nets)?);
        }
        Ok(())
    }

    /// One training iteration (D step, G step, rho clipping) at learning rate `lr` on a batch of
    /// each domain, each [N, C, S, S] in [-1, 1] on the models' device; returns its losses.
    ///
    /// If it fails, the replicas are stopped (their replies may be out of step with this
    /// thread's): a later call trains without them, the same training.
    pub(crate) fn step(
        &mut self,
        cfg: &TrainConfig,
        lr: f64,
        real_a: &Tensor,
        real_b: &Tensor,
    ) -> Result<Losses> {
        let result = self.step_with_replicas(cfg, lr, real_a, real_b);
        if result.is_err() {
            self.replicas.clear();
        }
        result
    }

    fn step_with_replicas(
        &mut self,
        cfg: &TrainConfig,
        lr: f64,
        real_a: &Tensor,
        real_b: &Tensor,
    ) -> Result<Losses> {
        let (na, nb) = (real_a.size()[0], real_b.size()[0]);
        // Every pass needs at least one image of each domain.
        let passes = (self.replicas.len() + 1).min(na.min(nb).max(1) as usize);
        let runs_a = split(na, passes);
        let runs_b = split(nb, passes);
        let part = |k: usize| {
            let ((sa, la), (sb, lb)) = (runs_a[k], runs_b[k]);
            let shares = Shares {
                a: la as f64 / na as f64,
                b: lb as f64 / nb as f64,
            };
            (real_a.narrow(0, sa, la), real_b.narrow(0, sb, lb), shares)
        };
        let used = passes - 1;

        // D step: every pass adds its share's gradients; this thread's pass runs meanwhile.
        self.d_opt.zero_grad();
        for (k, replica) in self.replicas[..used].iter_mut().enumerate() {
            let (a, b, shares) = part(k + 1);
            replica.generate_and_judge(a, b, shares)?;
        }
        let (a, b, shares) = part(0);
        let (generated, mut d_loss) = generate_and_judge(&self.nets, cfg, &a, &b, shares);
        for replica in &mut self.replicas[..used] {
            d_loss += replica.wait_d_loss()?;
            replica.add_discriminator_grads(self.d_opt.params())?;
        }
        self.d_opt.step(lr);
        for replica in &self.replicas {
            replica.copy_discriminators();
        }

        // G step, through the updated discriminators.
        self.g_opt.zero_grad();
        for replica in &mut self.replicas[..used] {
            replica.backpropagate_generators()?;
        }
        let mut losses =
            backpropagate_generators(&self.nets, &self.d_params, cfg, &generated, &a, &b, shares)?;
        for replica in &mut self.replicas[..used] {
            losses = losses.plus(&replica.wait_losses()?);
            replica.add_generator_grads(self.g_opt.params())?;
        }
        losses.d_loss = d_loss;
        self.g_opt.step(lr);
        self.nets.gen_a2b.clip_rho();
        self.nets.gen_b2a.clip_rho();
        // The discriminators again too: the G step refined their u and v here and in the copies
        // that had a share, not in those left idle by a batch smaller than the replicas.
        for replica in &self.replicas {
            replica.copy_generators();
            replica.copy_discriminators();
        }
        Ok(losses)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tch::Kind;

    /// ||a - b|| / ||a|| over every gradient of `a`'s and `b`'s optimizer parameters.
    fn grad_gap(a: &Adam, b: &Adam) -> f64 {
        let (mut diff, mut norm) = (0.0, 0.0);
        for (x, y) in a.params().zip(b.params()) {
            let (gx, gy) = (x.grad(), y.grad());
            assert!(gx.defined() && gy.defined());
            diff += (&gx - &gy).square().sum(Kind::Double).double_value(&[]);
            norm += gx.square().sum(Kind::Double).double_value(&[]);
        }
        (diff / norm).sqrt()
    }

    /// A replica adds its share of every gradient: the summed gradients equal one pass's over
    /// the whole batch, with A and B split differently (3 = 2 + 1 and 2 = 1 + 1) and across a
    /// batch too small to share (1 B image), which leaves the replica idle for a step.
    #[test]
    fn a_replica_adds_its_share_of_the_gradients() {
        let cfg = TrainConfig {
            img_size: 96,
            ch: 4,
            n_res: 1,
            light: true,
            lr: 1e-3,
            ..TrainConfig::default()
        };
        let mut one = Models::new(&cfg, Device::Cpu).unwrap();
        let mut two = Models::new(&cfg, Device::Cpu).unwrap();
        // The same start, whatever torch's generator gave each.
        tch::no_grad(|| {
            for kind in NetworkKind::ALL {
                let theirs = one.nets.store(kind).variables();
                for (name, mut var) in two.nets.store(kind).variables() {
                    var.copy_(&theirs[&name]);
                }
            }
        });
        let two_cfg = TrainConfig {
            replicas: 2,
            ..cfg.clone()
        };
        two.start_replicas(&two_cfg, Device::Cpu).unwrap();
        let image = |n: i64| Tensor::rand([n, 3, 96, 96], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        for (na, nb) in [(3, 2), (2, 1), (3, 2)] {
            let (a, b) = (image(na), image(nb));
            let l1 = one.step(&cfg, cfg.lr, &a, &b).unwrap();
            let l2 = two.step(&two_cfg, cfg.lr, &a, &b).unwrap();
            for ((name, x), (_, y)) in l1.series().iter().zip(l2.series()) {
                assert!(
                    (x - y).abs() <= 1e-5 * x.abs(),
                    "{na}+{nb}: {name} {x} vs {y}"
                );
            }
            for (what, gap) in [
                ("D", grad_gap(&one.d_opt, &two.d_opt)),
                ("G", grad_gap(&one.g_opt, &two.g_opt)),
            ] {
                assert!(
                    gap < 1e-4,
                    "{na}+{nb}: {what} gradients differ by {gap} (relative)"
                );
            }
        }
    }

    #[test]
    fn batches_split_into_nearly_equal_runs_of_at_least_one() {
        assert_eq!(split(4, 2), vec![(0, 2), (2, 2)]);
        assert_eq!(split(5, 2), vec![(0, 3), (3, 2)]);
        assert_eq!(split(1, 2), vec![(0, 1)]);
        assert_eq!(split(3, 1), vec![(0, 3)]);
        assert_eq!(split(2, 4), vec![(0, 1), (1, 1)]);
    }
}
