//! The training step and loop: the reference's D step then G step, exactly, with the work it
//! does twice done once, plus checkpoints (weights, Adam moments, data stream position), sample
//! grids, metrics and the loss plot.
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

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use brs_model::checkpoint::{
    CKPT_PREFIX, Checkpoint, CheckpointKind, CheckpointMeta, CheckpointWriter, OPTIM_FILE,
    RNG_FILE, checkpoint_name, prune, read_latest,
};
use brs_model::precision::{channels_last, store_channels_last};
use brs_model::{Discriminator, Generator, NetworkKind, Networks};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::config::TrainConfig;
use crate::data::{CROP_MARGIN, Domain, FOLDERS, Loader, LoaderState, load_domain, to_batch};
use crate::error::{Result, TrainError};
use crate::losses::{Losses, bce_logits, l1, lsgan};
use crate::metrics::{self, METRICS_FILE, MetricsLine};
use crate::optim::Adam;
use crate::plot::{PLOT_FILE, loss_plot};
use crate::png::write_png;
use crate::samples;

/// How to run `train`.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub config: TrainConfig,
    /// Dataset root (overrides the config's `data`).
    pub data: Option<PathBuf>,
    /// Run directory (overrides the config's `out`).
    pub out: Option<PathBuf>,
    /// Continue the run in `out` from its latest checkpoint.
    pub resume: bool,
    /// Stop (with a checkpoint) once this many iterations are done, before `iteration`.
    pub stop_at: Option<u64>,
    /// Draw a progress bar on a terminal (plain lines otherwise).
    pub progress: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Iterations completed in total (including those before a resume).
    pub iteration: u64,
    /// Iterations this process ran.
    pub ran: u64,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// Stopped by a signal or `stop_at` before the configured iterations.
    pub stopped_early: bool,
    /// Seconds per iteration of this process (0 when it ran none).
    pub sec_per_it: f64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RngFile {
    loader: LoaderState,
}

/// The six networks, their optimizers and data, on one device.
pub struct Trainer {
    cfg: TrainConfig,
    device: Device,
    nets: Networks,
    g_opt: Adam,
    d_opt: Adam,
    d_params: Vec<Tensor>,
    loader: Loader,
    tests: [Tensor; 2],
    iteration: u64,
    out: PathBuf,
    history: Vec<MetricsLine>,
    report: Vec<String>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("iteration", &self.iteration)
            .field("out", &self.out)
            .finish()
    }
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

impl Trainer {
    /// Loads the data, builds (or, with `resume`, restores) the networks and optimizers.
    pub fn new(opts: &TrainOptions) -> Result<Self> {
        let cfg = opts.config.clone();
        cfg.validate()?;
        let data = opts
            .data
            .clone()
            .or_else(|| cfg.data.clone())
            .ok_or_else(|| {
                TrainError::Config("no dataset: pass --data DIR or set `data` in the config".into())
            })?;
        let out = opts
            .out
            .clone()
            .or_else(|| cfg.out.clone())
            .ok_or_else(|| {
                TrainError::Config(
                    "no run directory: pass --out DIR or set `out` in the config".into(),
                )
            })?;
        let device = brs_model::parse_device(&cfg.device)?;
        if cfg.threads > 0 {
            tch::set_num_threads(cfg.threads as i32);
        }

        let existing = if out.is_dir() {
            read_latest(&out)?
        } else {
            None
        };
        if let Some(latest) = existing.as_ref().filter(|_| !opts.resume) {
            return Err(TrainError::RunExists {
                out,
                latest: latest.clone(),
            });
        }

        let img = cfg.img_size as u32;
        let mut report = Vec::new();
        let mut load = |folder: &str, side: u32, limit: Option<usize>| -> Result<Domain> {
            let domain = load_domain(&data.join(folder), side, limit)?;
            report.push(domain_report(folder, &domain));
            Ok(domain)
        };
        let [train_a, train_b, test_a, test_b] = FOLDERS;
        let train_a = load(train_a, img + CROP_MARGIN, None)?;
        let train_b = load(train_b, img + CROP_MARGIN, None)?;
        let test_a = load(test_a, img, Some(cfg.sample_count))?;
        let test_b = load(test_b, img, Some(cfg.sample_count))?;
        let test_batch = |d: &Domain| to_batch(&d.images.iter().collect::<Vec<_>>());
        let tests = [test_batch(&test_a), test_batch(&test_b)];
        let loader = Loader::new([train_a, train_b], img, cfg.batch_size, cfg.seed);

        tch::manual_seed(cfg.seed as i64);
        let nets = Networks::new(&cfg.model(), device)?;
        let g_opt = Adam::new(trainable(&nets, &GENERATORS), cfg.weight_decay);
        let d_opt = Adam::new(trainable(&nets, &DISCRIMINATORS), cfg.weight_decay);
        let d_params = trainable(&nets, &DISCRIMINATORS)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let mut trainer = Trainer {
            cfg,
            device,
            nets,
            g_opt,
            d_opt,
            d_params,
            loader,
            tests,
            iteration: 0,
            out,
            history: Vec::new(),
            report,
        };
        if existing.is_some() {
            trainer.restore()?;
        } else if opts.resume {
            trainer.report.push(format!(
                "no checkpoint in {}: starting afresh",
                trainer.out.display()
            ));
        }
        if trainer.cfg.channels_last {
            trainer.make_channels_last();
        }
        Ok(trainer)
    }

    /// Lines describing the data (counts, skipped files) and any resume, for the user.
    pub fn report(&self) -> &[String] {
        &self.report
    }

    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    pub fn networks(&self) -> &Networks {
        &self.nets
    }

    fn restore(&mut self) -> Result<()> {
        let ckpt = Checkpoint::open(&self.out)?;
        let fail = |reason: String| TrainError::Resume {
            path: ckpt.dir.clone(),
            reason,
        };
        if ckpt.meta.kind != CheckpointKind::Training {
            return Err(fail("it is an export, not a training checkpoint".into()));
        }
        if ckpt.meta.model != self.cfg.model() {
            return Err(fail(format!(
                "it was trained with {:?}, the config says {:?}; the network keys (img_size, \
                 ch, n_res, light) must match",
                ckpt.meta.model,
                self.cfg.model()
            )));
        }
        self.nets.load_from(&ckpt)?;
        if ckpt.meta.files.contains_key(OPTIM_FILE) {
            let state = ckpt.read_tensors(OPTIM_FILE)?;
            self.g_opt
                .load_state("G", &state)
                .map_err(|e| fail(e.to_string()))?;
            self.d_opt
                .load_state("D", &state)
                .map_err(|e| fail(e.to_string()))?;
        } else {
            self.report.push(format!(
                "{} has no optimizer state (an imported checkpoint?): Adam starts afresh",
                ckpt.dir.display()
            ));
        }
        if ckpt.meta.files.contains_key(RNG_FILE) {
            let rng: RngFile = serde_json::from_slice(&ckpt.read_file(RNG_FILE)?)
                .map_err(|e| fail(format!("{RNG_FILE}: {e}")))?;
            self.loader
                .restore(&rng.loader)
                .map_err(|e| fail(e.to_string()))?;
        }
        self.iteration = ckpt.meta.iteration;
        let log = self.out.join(METRICS_FILE);
        self.history = metrics::read(&log, self.iteration)?;
        metrics::rewrite(&log, &self.history)?;
        self.report.push(format!(
            "resumed from {} at iteration {}",
            ckpt.dir.display(),
            self.iteration
        ));
        Ok(())
    }

    fn make_channels_last(&mut self) {
        for (_, vs) in self.nets.stores() {
            store_channels_last(vs);
        }
    }

    fn input(&self, t: Tensor) -> Tensor {
        let t = t.to_device(self.device);
        if self.cfg.channels_last {
            channels_last(&t)
        } else {
            t
        }
    }

    fn set_discriminators_trainable(&self, on: bool) {
        for p in &self.d_params {
            let _ = p.set_requires_grad(on);
        }
    }

    /// One training iteration (D step, G step, rho clipping) on a batch of each domain, each
    /// [N, C, S, S] in [-1, 1] on the trainer's device; returns its losses.
    pub fn step(&mut self, real_a: &Tensor, real_b: &Tensor) -> Result<Losses> {
        let cfg = &self.cfg;
        let lr = cfg.lr_at(self.iteration + 1);
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

        let losses = Losses {
            d_loss,
            g_loss: g_loss.double_value(&[]),
            g_adv: g_adv.double_value(&[]),
            g_cycle: g_cycle.double_value(&[]),
            g_identity: g_identity.double_value(&[]),
            g_cam: g_cam.double_value(&[]),
        };
        self.iteration += 1;
        if !(losses.d_loss.is_finite() && losses.g_loss.is_finite()) {
            return Err(TrainError::NonFiniteLoss {
                iteration: self.iteration,
                d_loss: losses.d_loss,
                g_loss: losses.g_loss,
            });
        }
        Ok(losses)
    }

    /// Writes a checkpoint of everything resume needs, then prunes old ones. Any failure (a full
    /// disk, say) leaves the previous checkpoint and `latest` as they were: the writer works in a
    /// hidden directory that it removes when it fails.
    pub fn save(&self) -> Result<PathBuf> {
        let dir = self.write_checkpoint().map_err(|e| TrainError::Save {
            iteration: self.iteration,
            cause: Box::new(e),
        })?;
        prune(&self.out, CKPT_PREFIX, self.cfg.keep_last)?;
        Ok(dir)
    }

    fn write_checkpoint(&self) -> Result<PathBuf> {
        let name = checkpoint_name(CKPT_PREFIX, self.iteration);
        let mut writer = CheckpointWriter::begin(&self.out, &name)?;
        self.nets.add_to(&mut writer)?;
        let mut optim = self.g_opt.state("G");
        optim.extend(self.d_opt.state("D"));
        writer.add_tensors(OPTIM_FILE, &optim, None)?;
        let rng = serde_json::to_vec_pretty(&RngFile {
            loader: self.loader.state(),
        })
        .map_err(|cause| TrainError::Serialise {
            what: "the data stream state",
            cause,
        })?;
        writer.add_file(RNG_FILE, &rng)?;
        let mut meta =
            CheckpointMeta::new(CheckpointKind::Training, &self.cfg.model(), self.iteration);
        meta.training = serde_json::to_value(&self.cfg).ok();
        Ok(writer.commit(meta)?)
    }

    /// Sample grids of the fixed test images, one per direction, computed without autograd.
    pub fn write_samples(&self) -> Result<[PathBuf; 2]> {
        let _guard = tch::no_grad_guard();
        let dir = self.out.join("samples");
        fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        let nets = &self.nets;
        let grid = |name: &str, test: &Tensor, forward: &Generator, back: &Generator| {
            let mut rows = Vec::new();
            for chunk in test.split(4, 0) {
                let x = self.input(chunk);
                let o = forward.forward(&x);
                let cycle = back.forward(&o.image).image;
                for k in 0..x.size()[0] {
                    rows.push(samples::SampleRow {
                        input: brs_model::image::tensor_to_rgb(&x.get(k))?,
                        heatmap: brs_model::image::heatmap_to_rgb(
                            &o.heatmap.get(k),
                            self.cfg.img_size,
                        )?,
                        translation: brs_model::image::tensor_to_rgb(&o.image.get(k))?,
                        cycle: brs_model::image::tensor_to_rgb(&cycle.get(k))?,
                    });
                }
            }
            let path = dir.join(format!("{name}_{:07}.png", self.iteration));
            write_png(&path, &samples::grid(&rows))?;
            Ok::<_, TrainError>(path)
        };
        Ok([
            grid("A2B", &self.tests[0], &nets.gen_a2b, &nets.gen_b2a)?,
            grid("B2A", &self.tests[1], &nets.gen_b2a, &nets.gen_a2b)?,
        ])
    }

    /// Runs until `iteration` (or `stop_at`, or `stop` is raised), checkpointing on the way and
    /// at the end.
    pub fn run(&mut self, opts: &TrainOptions, stop: &AtomicBool) -> Result<RunSummary> {
        let total = self.cfg.iteration;
        let end = opts.stop_at.map_or(total, |s| s.min(total));
        let start_iteration = self.iteration;
        let bar = if opts.progress {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_position(self.iteration);
        bar.reset_eta();
        let metrics_path = self.out.join(METRICS_FILE);
        fs::create_dir_all(&self.out).map_err(|e| TrainError::io(&self.out, e))?;
        let mut checkpoint = None;
        let mut saved_at = None;
        let started = Instant::now();
        let mut window = Instant::now();
        let mut window_its = 0u64;
        while self.iteration < end {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let a = self.loader.next_batch(0);
            let b = self.loader.next_batch(1);
            let (a, b) = (self.input(a), self.input(b));
            let losses = self.step(&a, &b)?;
            let it = self.iteration;
            window_its += 1;
            bar.set_position(it);
            bar.set_message(format!(
                "d {:.3} g {:.3} (cyc {:.3} cam {:.3})",
                losses.d_loss, losses.g_loss, losses.g_cycle, losses.g_cam
            ));
            if it.is_multiple_of(self.cfg.log_freq) || it == 1 || it == end {
                let line = MetricsLine {
                    iteration: it,
                    lr: self.cfg.lr_at(it),
                    sec_per_it: window.elapsed().as_secs_f64() / window_its as f64,
                    losses,
                };
                window = Instant::now();
                window_its = 0;
                metrics::append(&metrics_path, &line)?;
                self.history.push(line);
            }
            if it.is_multiple_of(self.cfg.print_freq) {
                self.write_samples()?;
                loss_plot(&self.out.join(PLOT_FILE), &self.history)?;
                let line = format!(
                    "[{it}/{total}] d_loss {:.4} g_loss {:.4} adv {:.4} cycle {:.4} identity {:.4} cam {:.4}",
                    losses.d_loss,
                    losses.g_loss,
                    losses.g_adv,
                    losses.g_cycle,
                    losses.g_identity,
                    losses.g_cam
                );
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
            if it.is_multiple_of(self.cfg.save_freq) {
                checkpoint = Some(self.save()?);
                saved_at = Some(it);
            }
        }
        // A signal, or `stop_at` before the configured end.
        let stopped_early = self.iteration < total;
        if saved_at != Some(self.iteration) && self.iteration > start_iteration {
            checkpoint = Some(self.save()?);
            if !self.history.is_empty() {
                loss_plot(&self.out.join(PLOT_FILE), &self.history)?;
            }
        }
        bar.finish_and_clear();
        let ran = self.iteration - start_iteration;
        Ok(RunSummary {
            iteration: self.iteration,
            ran,
            checkpoint,
            stopped_early,
            sec_per_it: if ran > 0 {
                started.elapsed().as_secs_f64() / ran as f64
            } else {
                0.0
            },
        })
    }
}

fn domain_report(folder: &str, d: &Domain) -> String {
    let mut line = format!(
        "{folder}: {} images from {}",
        d.images.len(),
        d.dir.display()
    );
    if !d.skipped.is_empty() {
        line.push_str(&format!("; skipped {} unreadable:", d.skipped.len()));
        for (path, reason) in d.skipped.iter().take(5) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            line.push_str(&format!(" {name} ({reason});"));
        }
        if d.skipped.len() > 5 {
            line.push_str(" ...");
        }
    }
    line
}

/// Trains as `opts` says, stopping cleanly (with a checkpoint) when `stop` is raised.
pub fn train(opts: &TrainOptions, stop: &AtomicBool) -> Result<RunSummary> {
    let mut trainer = Trainer::new(opts)?;
    for line in trainer.report() {
        eprintln!("{line}");
    }
    trainer.run(opts, stop)
}
