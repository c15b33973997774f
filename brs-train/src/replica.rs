//! A copy of the networks on a worker thread that trains on part of every batch (data
//! parallelism over CPU cores).
//!
//! Why: at the demo's sizes libtorch's intra-op threads buy little (2 threads ran a batch of 4 in
//! 0.97 s/it where two single-threaded processes each ran a batch of 2 in 0.70), because most of
//! a small model's time is per-operation overhead that one thread pays serially. Splitting the
//! batch instead gives each core whole operations. The copy computes its share's losses,
//! weighted by the share, and their gradients; the owning thread adds them to its own, takes
//! the optimizer step alone (Adam's moments live only there), and copies every variable back
//! after each step, spectral norm's `u` and `v` included, so every copy starts each step
//! identical to it (the discriminators also after the D step, for the G step).
//!
//! The owning thread reads the copy's gradients and writes its variables only while the worker
//! waits for its next job: the channels order every access.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use brs_model::{NetworkKind, Networks};
use tch::{Device, Tensor};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::losses::Losses;
use crate::step::{
    DISCRIMINATORS, GENERATORS, Generated, Shares, backpropagate_generators, generate_and_judge,
    nets_channels_last, trainable,
};

enum Job {
    /// Generate from a share of the batch and add the D step's gradients.
    Judge {
        a: Tensor,
        b: Tensor,
        shares: Shares,
    },
    /// Add the G step's gradients for the share last judged.
    Backpropagate,
}

enum Reply {
    Judged(f64),
    Backpropagated(Result<Losses>),
}

/// The owning thread's end of one worker.
pub(crate) struct Replica {
    index: usize,
    jobs: Option<Sender<Job>>,
    replies: Receiver<Reply>,
    thread: Option<JoinHandle<()>>,
    /// (the owner's variable, the copy's), every variable of the generators.
    generators: Vec<(Tensor, Tensor)>,
    /// The same for the discriminators.
    discriminators: Vec<(Tensor, Tensor)>,
    /// The copy's trainable parameters in the owner's optimizer order.
    g_params: Vec<Tensor>,
    d_params: Vec<Tensor>,
}

/// Every variable of `kinds` in `owner` beside the same one in `copy`, which must have them all.
fn pairs(
    index: usize,
    owner: &Networks,
    copy: &Networks,
    kinds: &[NetworkKind],
) -> Result<Vec<(Tensor, Tensor)>> {
    let mut out = Vec::new();
    for &kind in kinds {
        let theirs = copy.store(kind).variables();
        let mut ours: Vec<_> = owner.store(kind).variables().into_iter().collect();
        ours.sort_by(|a, b| a.0.cmp(&b.0));
        if ours.len() != theirs.len() {
            return Err(TrainError::Replica {
                index,
                reason: format!("the copy of {} has other variables", kind.name()),
            });
        }
        for (name, var) in ours {
            let copied = theirs.get(&name).ok_or_else(|| TrainError::Replica {
                index,
                reason: format!("the copy of {} lacks {name}", kind.name()),
            })?;
            out.push((var, copied.shallow_clone()));
        }
    }
    Ok(out)
}

fn params(nets: &Networks, kinds: &[NetworkKind]) -> Vec<Tensor> {
    trainable(nets, kinds).into_iter().map(|(_, t)| t).collect()
}

fn zero_grads(params: &[Tensor]) {
    for p in params {
        p.shallow_clone().zero_grad();
    }
}

/// Adds the copy's gradients to the owner's, parameter by parameter.
fn add_grads<'a>(
    index: usize,
    owner: impl Iterator<Item = &'a Tensor>,
    copy: &[Tensor],
) -> Result<()> {
    tch::no_grad(|| {
        for (ours, theirs) in owner.zip(copy) {
            let theirs = theirs.grad();
            if !theirs.defined() {
                continue;
            }
            let mut grad = ours.grad();
            if !grad.defined() {
                return Err(TrainError::Replica {
                    index,
                    reason: "a parameter has a gradient in the copy and none here".into(),
                });
            }
            let _ = grad.g_add_(&theirs);
        }
        Ok(())
    })
}

fn copy_all(pairs: &[(Tensor, Tensor)]) {
    tch::no_grad(|| {
        for (ours, theirs) in pairs {
            theirs.shallow_clone().copy_(ours);
        }
    });
}

/// The worker: runs jobs on its networks until the owner hangs up.
fn serve(
    index: usize,
    nets: Networks,
    cfg: TrainConfig,
    jobs: Receiver<Job>,
    replies: Sender<Reply>,
) {
    // libtorch's thread count is per thread; the owner set its own the same way.
    if let Some(threads) = cfg.intra_op_threads() {
        tch::set_num_threads(threads);
    }
    let g_params = params(&nets, &GENERATORS);
    let d_params = params(&nets, &DISCRIMINATORS);
    let mut judged: Option<(Generated, Tensor, Tensor, Shares)> = None;
    while let Ok(job) = jobs.recv() {
        let reply = match job {
            Job::Judge { a, b, shares } => {
                zero_grads(&d_params);
                let (generated, d_loss) = generate_and_judge(&nets, &cfg, &a, &b, shares);
                judged = Some((generated, a, b, shares));
                Reply::Judged(d_loss)
            }
            Job::Backpropagate => Reply::Backpropagated(match judged.take() {
                Some((generated, a, b, shares)) => {
                    zero_grads(&g_params);
                    backpropagate_generators(&nets, &d_params, &cfg, &generated, &a, &b, shares)
                }
                None => Err(TrainError::Replica {
                    index,
                    reason: "asked for the G step before the D step".into(),
                }),
            }),
        };
        if replies.send(reply).is_err() {
            break;
        }
    }
}

impl Replica {
    /// A worker thread with a copy of `owner`'s networks as they are now.
    pub(crate) fn start(
        index: usize,
        cfg: &TrainConfig,
        device: Device,
        owner: &Networks,
    ) -> Result<Self> {
        // Initialised at random (drawing from torch's generator, which nothing draws from after
        // the owner's initialisation), then overwritten with the owner's variables.
        let copy = Networks::new(&cfg.model(), device)?;
        if cfg.channels_last {
            nets_channels_last(&copy);
        }
        let generators = pairs(index, owner, &copy, &GENERATORS)?;
        let discriminators = pairs(index, owner, &copy, &DISCRIMINATORS)?;
        copy_all(&generators);
        copy_all(&discriminators);
        let g_params = params(&copy, &GENERATORS);
        let d_params = params(&copy, &DISCRIMINATORS);
        let (jobs, job_rx) = channel();
        let (reply_tx, replies) = channel();
        let cfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name(format!("brs-replica-{index}"))
            .spawn(move || serve(index, copy, cfg, job_rx, reply_tx))
            .map_err(|e| TrainError::Replica {
                index,
                reason: format!("cannot start its thread: {e}"),
            })?;
        Ok(Replica {
            index,
            jobs: Some(jobs),
            replies,
            thread: Some(thread),
            generators,
            discriminators,
            g_params,
            d_params,
        })
    }

    /// Why the worker is gone: its panic message if it panicked.
    fn stopped(&mut self) -> TrainError {
        self.jobs = None;
        let reason = match self.thread.take().map(JoinHandle::join) {
            Some(Err(panic)) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "its thread panicked".into()),
            _ => "its thread has stopped".into(),
        };
        TrainError::Replica {
            index: self.index,
            reason,
        }
    }

    fn send(&mut self, job: Job) -> Result<()> {
        match &self.jobs {
            Some(jobs) if jobs.send(job).is_ok() => Ok(()),
            _ => Err(self.stopped()),
        }
    }

    fn reply(&mut self) -> Result<Reply> {
        self.replies.recv().map_err(|_| self.stopped())
    }

    /// Starts the generators and the D step on this share of the batch.
    pub(crate) fn generate_and_judge(
        &mut self,
        a: Tensor,
        b: Tensor,
        shares: Shares,
    ) -> Result<()> {
        self.send(Job::Judge { a, b, shares })
    }

    /// The share's D loss, once its gradients are ready.
    pub(crate) fn wait_d_loss(&mut self) -> Result<f64> {
        match self.reply()? {
            Reply::Judged(d_loss) => Ok(d_loss),
            Reply::Backpropagated(_) => Err(self.out_of_turn()),
        }
    }

    /// Starts the G step on the share last judged.
    pub(crate) fn backpropagate_generators(&mut self) -> Result<()> {
        self.send(Job::Backpropagate)
    }

    /// The share's G losses, once its gradients are ready.
    pub(crate) fn wait_losses(&mut self) -> Result<Losses> {
        match self.reply()? {
            Reply::Backpropagated(losses) => losses,
            Reply::Judged(_) => Err(self.out_of_turn()),
        }
    }

    fn out_of_turn(&self) -> TrainError {
        TrainError::Replica {
            index: self.index,
            reason: "answered out of turn".into(),
        }
    }

    /// Adds the share's discriminator gradients to `owner`'s (the D optimizer's parameters).
    pub(crate) fn add_discriminator_grads<'a>(
        &self,
        owner: impl Iterator<Item = &'a Tensor>,
    ) -> Result<()> {
        add_grads(self.index, owner, &self.d_params)
    }

    /// Adds the share's generator gradients to `owner`'s (the G optimizer's parameters).
    pub(crate) fn add_generator_grads<'a>(
        &self,
        owner: impl Iterator<Item = &'a Tensor>,
    ) -> Result<()> {
        add_grads(self.index, owner, &self.g_params)
    }

    /// Makes the copy's discriminators equal the owner's.
    pub(crate) fn copy_discriminators(&self) {
        copy_all(&self.discriminators);
    }

    /// Makes the copy's generators equal the owner's.
    pub(crate) fn copy_generators(&self) {
        copy_all(&self.generators);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
