//! A training run: `Trainer::new` puts together the options, the data, the models and (with
//! `--resume`) the last checkpoint; `Trainer::run` is the loop, which logs metrics, writes sample
//! grids, the loss plot and checkpoints when the config says, and reports each as an event.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use brs_model::Networks;
use brs_model::checkpoint::read_latest;
use brs_model::precision::channels_last;
use tch::{Device, Tensor};

use crate::checkpoint;
use crate::config::{LrSchedule, TrainConfig};
use crate::data::{Loader, load_dataset};
use crate::error::{Result, TrainError};
use crate::events::{Notice, Observer, TrainEvent};
use crate::losses::Losses;
use crate::metrics::{self, METRICS_FILE, MetricsLine};
use crate::plot::{PLOT_FILE, loss_plot};
use crate::samples::{SAMPLES_DIR, write_grids};
use crate::step::Models;

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
    /// Stop (with a checkpoint) once the loop has run this many minutes. With `decay_flag`, the
    /// learning rate falls over the second half of them, as the paper's does over the second
    /// half of its iterations (see `LrSchedule::at_half_time`).
    pub max_minutes: Option<f64>,
}

/// Where a run reads and writes, and on what: the options with the config's defaults applied.
struct Resolved {
    cfg: TrainConfig,
    data: PathBuf,
    out: PathBuf,
    device: Device,
}

impl TrainOptions {
    fn resolve(&self) -> Result<Resolved> {
        let cfg = self.config.clone();
        cfg.validate()?;
        let data = self
            .data
            .clone()
            .or_else(|| cfg.data.clone())
            .ok_or_else(|| {
                TrainError::Config("no dataset: pass --data DIR or set `data` in the config".into())
            })?;
        let out = self
            .out
            .clone()
            .or_else(|| cfg.out.clone())
            .ok_or_else(|| {
                TrainError::Config(
                    "no run directory: pass --out DIR or set `out` in the config".into(),
                )
            })?;
        let device = cfg.device.resolve()?;
        if let Some(m) = self.max_minutes
            && !(m.is_finite() && m > 0.0)
        {
            return Err(TrainError::Config(format!(
                "max minutes = {m} (allowed: more than 0)"
            )));
        }
        Ok(Resolved {
            cfg,
            data,
            out,
            device,
        })
    }
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
    /// Why the run stopped before the configured iterations, if it did.
    pub early_stop: Option<EarlyStop>,
    /// Seconds per iteration of this process (0 when it ran none).
    pub sec_per_it: f64,
}

/// What ended a run before its configured iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStop {
    /// `stop` was raised (SIGINT or SIGTERM in the binary).
    Signal,
    /// `stop_at` was reached.
    StopAt,
    /// `max_minutes` ran out, or the decay fitted to them ended.
    TimeBudget,
}

/// The models, their data and the run directory, on one device.
pub struct Trainer {
    cfg: TrainConfig,
    device: Device,
    models: Models,
    loader: Loader,
    tests: [Tensor; 2],
    iteration: u64,
    /// The config's learning rate schedule, until a time budget refits it.
    schedule: LrSchedule,
    out: PathBuf,
    history: Vec<MetricsLine>,
    notices: Vec<Notice>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("iteration", &self.iteration)
            .field("out", &self.out)
            .finish()
    }
}

impl Trainer {
    /// Loads the data, builds (or, with `resume`, restores) the networks and optimizers.
    pub fn new(opts: &TrainOptions) -> Result<Self> {
        let Resolved {
            cfg,
            data,
            out,
            device,
        } = opts.resolve()?;
        if cfg.replicas > 1 && device != Device::Cpu {
            return Err(TrainError::Config(format!(
                "replicas = {} splits batches between CPU threads; on {device:?} use 1",
                cfg.replicas
            )));
        }
        if let Some(threads) = cfg.intra_op_threads() {
            tch::set_num_threads(threads);
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
        let mut notices = Vec::new();
        let dataset = load_dataset(&data, &cfg, &mut notices)?;
        let mut trainer = Trainer {
            models: Models::new(&cfg, device)?,
            schedule: cfg.schedule(),
            cfg,
            device,
            loader: dataset.loader,
            tests: dataset.tests,
            iteration: 0,
            out,
            history: Vec::new(),
            notices,
        };
        if existing.is_some() {
            trainer.resume()?;
        } else if opts.resume {
            trainer.notices.push(Notice::NoCheckpoint {
                out: trainer.out.clone(),
            });
        }
        if trainer.cfg.channels_last {
            trainer.models.make_channels_last();
        }
        trainer.models.start_replicas(&trainer.cfg, device)?;
        Ok(trainer)
    }

    /// What the user should know about the data and any resume.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    pub fn networks(&self) -> &Networks {
        &self.models.nets
    }

    /// Restores the latest checkpoint, and cuts the metrics log back to it.
    fn resume(&mut self) -> Result<()> {
        self.iteration = checkpoint::restore(
            &self.out,
            &self.cfg,
            &mut self.models,
            &mut self.loader,
            &mut self.notices,
        )?;
        let log = self.out.join(METRICS_FILE);
        self.history = metrics::read(&log, self.iteration)?;
        metrics::rewrite(&log, &self.history)?;
        Ok(())
    }

    fn input(&self, t: Tensor) -> Tensor {
        let t = t.to_device(self.device);
        if self.cfg.channels_last {
            channels_last(&t)
        } else {
            t
        }
    }

    /// One training iteration (D step, G step, rho clipping) on a batch of each domain, each
    /// [N, C, S, S] in [-1, 1] on the trainer's device; returns its losses.
    pub fn step(&mut self, real_a: &Tensor, real_b: &Tensor) -> Result<Losses> {
        let lr = self.schedule.at(self.iteration + 1);
        let losses = self.models.step(&self.cfg, lr, real_a, real_b)?;
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

    /// Writes a checkpoint of everything resume needs, then prunes old ones (see
    /// `checkpoint::save`).
    pub fn save(&self) -> Result<PathBuf> {
        checkpoint::save(
            &self.out,
            &self.cfg,
            self.iteration,
            &self.models,
            &self.loader,
        )
    }

    /// Sample grids of the fixed test images, one per direction, computed without autograd.
    pub fn write_samples(&self) -> Result<[PathBuf; 2]> {
        write_grids(
            &self.out.join(SAMPLES_DIR),
            self.iteration,
            &self.models.nets,
            &self.tests,
            self.cfg.img_size,
            |t| self.input(t),
        )
    }

    /// Runs until `iteration` (or `stop_at`, or `stop` is raised), checkpointing on the way and
    /// at the end, and tells `observer` what happens.
    pub fn run(
        &mut self,
        opts: &TrainOptions,
        stop: &AtomicBool,
        observer: &mut dyn Observer,
    ) -> Result<RunSummary> {
        let mut total = self.cfg.iteration;
        let mut end = opts.stop_at.map_or(total, |s| s.min(total));
        let start_iteration = self.iteration;
        observer.event(&TrainEvent::Started {
            iteration: self.iteration,
            total,
        });
        let metrics_path = self.out.join(METRICS_FILE);
        std::fs::create_dir_all(&self.out).map_err(|e| TrainError::io(&self.out, e))?;
        let mut checkpoint = None;
        let mut saved_at = None;
        let started = Instant::now();
        let mut window = Instant::now();
        let mut window_its = 0u64;
        let budget = opts.max_minutes.map(|m| Duration::from_secs_f64(m * 60.0));
        let mut half_time = budget.map(|b| b / 2);
        let mut early_stop = None;
        while self.iteration < end {
            if stop.load(Ordering::SeqCst) {
                early_stop = Some(EarlyStop::Signal);
                break;
            }
            if budget.is_some_and(|b| started.elapsed() >= b) {
                early_stop = Some(EarlyStop::TimeBudget);
                break;
            }
            if half_time.is_some_and(|h| started.elapsed() >= h) {
                half_time = None;
                let ran = self.iteration - start_iteration;
                if let Some(fitted) = self.schedule.at_half_time(self.iteration, ran) {
                    self.schedule = fitted;
                    total = self.iteration + ran;
                    end = end.min(total);
                    observer.event(&TrainEvent::DecayFitted {
                        iteration: self.iteration,
                        total,
                    });
                }
            }
            let a = self.loader.next_batch(0);
            let b = self.loader.next_batch(1);
            let (a, b) = (self.input(a), self.input(b));
            let losses = self.step(&a, &b)?;
            let it = self.iteration;
            window_its += 1;
            observer.event(&TrainEvent::Iteration {
                iteration: it,
                total,
                losses: &losses,
            });
            if it.is_multiple_of(self.cfg.log_freq) || it == 1 || it == end {
                let line = MetricsLine {
                    iteration: it,
                    lr: self.schedule.at(it),
                    sec_per_it: window.elapsed().as_secs_f64() / window_its as f64,
                    losses,
                };
                window = Instant::now();
                window_its = 0;
                metrics::append(&metrics_path, &line)?;
                self.history.push(line);
            }
            if it.is_multiple_of(self.cfg.print_freq) {
                let grids = self.write_samples()?;
                loss_plot(&self.out.join(PLOT_FILE), &self.history)?;
                observer.event(&TrainEvent::Samples {
                    iteration: it,
                    total,
                    losses: &losses,
                    grids: &grids,
                });
            }
            if it.is_multiple_of(self.cfg.save_freq) {
                let dir = self.save()?;
                observer.event(&TrainEvent::Checkpoint {
                    iteration: it,
                    dir: &dir,
                });
                checkpoint = Some(dir);
                saved_at = Some(it);
            }
        }
        if early_stop.is_none() && self.iteration < self.cfg.iteration {
            early_stop = Some(if self.iteration == total && total < self.cfg.iteration {
                EarlyStop::TimeBudget
            } else {
                EarlyStop::StopAt
            });
        }
        if saved_at != Some(self.iteration) && self.iteration > start_iteration {
            let dir = self.save()?;
            observer.event(&TrainEvent::Checkpoint {
                iteration: self.iteration,
                dir: &dir,
            });
            checkpoint = Some(dir);
            if !self.history.is_empty() {
                loss_plot(&self.out.join(PLOT_FILE), &self.history)?;
            }
        }
        let ran = self.iteration - start_iteration;
        Ok(RunSummary {
            iteration: self.iteration,
            ran,
            checkpoint,
            early_stop,
            sec_per_it: if ran > 0 {
                started.elapsed().as_secs_f64() / ran as f64
            } else {
                0.0
            },
        })
    }
}

/// Trains as `opts` says, stopping cleanly (with a checkpoint) when `stop` is raised; `observer`
/// hears the notices, then every event of the run.
pub fn train(
    opts: &TrainOptions,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<RunSummary> {
    let mut trainer = Trainer::new(opts)?;
    for notice in trainer.notices() {
        observer.event(&TrainEvent::Notice(notice));
    }
    trainer.run(opts, stop, observer)
}
