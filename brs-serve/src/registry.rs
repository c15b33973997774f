//! The named styles, each a generator behind its own batcher, and the hot-reload poller that
//! watches each style's `latest` pointer.
//!
//! A checkpoint is trusted only after it proves itself: its meta.json is checked (integrity, and
//! every size against `[models]`) before anything is allocated, the load and a warm-up forward
//! pass run inside `catch_unwind`, and only then is the generator handed to the batcher while
//! the old one keeps serving. Instances sharing a run directory load a new checkpoint after a
//! random delay, so they do not all pause at once; a load that fails is counted by reason and
//! retried with a growing delay (the next checkpoint is tried at once).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use brs_model::checkpoint::{Checkpoint, META, read_latest};
use brs_model::{Direction, ModelError, Precision, Translator};

use crate::admission::Slots;
use crate::batcher::{BatchConfig, Batcher, warm_up};
use crate::config::{Config, ModelLimits, StyleConfig};
use crate::metrics::Metrics;

/// Why a style's checkpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(
        "model {key} = {value} is over the serving limit {limit} ([models] in the server config)"
    )]
    OverLimit {
        key: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("loading panicked")]
    Panic,
    #[error("warm-up failed: {0}")]
    WarmUp(String),
}

impl LoadError {
    /// The `outcome` label of the reload counter.
    fn reason(&self) -> &'static str {
        match self {
            LoadError::Model(ModelError::Io { .. }) => "io",
            LoadError::Model(ModelError::NotACheckpoint { .. }) => "missing",
            LoadError::Model(ModelError::HashMismatch { .. } | ModelError::Corrupt { .. }) => {
                "corrupt"
            }
            LoadError::Model(_) => "invalid",
            LoadError::OverLimit { .. } => "over_limit",
            LoadError::Panic => "panic",
            LoadError::WarmUp(_) => "warm_up",
        }
    }
}

/// Why the registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("style {style}: {cause}")]
    Load { style: String, cause: LoadError },
    #[error("could not start the inference thread for style {style}: {cause}")]
    Thread {
        style: String,
        cause: std::io::Error,
    },
}

/// One served style.
#[derive(Debug)]
pub(crate) struct Style {
    pub(crate) name: String,
    pub(crate) direction: Direction,
    pub(crate) batcher: Batcher,
    pub(crate) slots: Slots,
    path: PathBuf,
    /// Run directories are watched; a checkpoint or export directory given directly is fixed.
    watched: bool,
    pointer: Mutex<Pointer>,
}

/// What the poller knows of a style's `latest`.
#[derive(Debug, Default)]
struct Pointer {
    current: Option<String>,
    /// A newer checkpoint seen, and when to try loading it (jitter, then backoff after failures).
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    name: String,
    due: Instant,
    failures: u32,
}

/// Longest wait between retries of a checkpoint that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

/// The wait before retry `failures` (1 = after the first failure): ten polls, doubling.
fn backoff(poll: Duration, failures: u32) -> Duration {
    (poll * 10)
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

#[derive(Debug)]
pub(crate) struct Registry {
    styles: BTreeMap<String, Arc<Style>>,
    default: String,
    device: tch::Device,
    precision: Precision,
    limits: ModelLimits,
    jitter: Duration,
    poll: Duration,
    metrics: Arc<Metrics>,
}

fn is_run_dir(path: &Path) -> bool {
    !path.join(META).is_file()
}

fn over(key: &'static str, value: i64, limit: i64) -> Result<(), LoadError> {
    if value > limit {
        return Err(LoadError::OverLimit {
            key,
            value: value.max(0) as u64,
            limit: limit.max(0) as u64,
        });
    }
    Ok(())
}

/// Opens `dir`, checks its model against `limits` before allocating it, loads and warms up the
/// generator of `direction`, all inside `catch_unwind`.
fn open(
    dir: &Path,
    direction: Direction,
    device: tch::Device,
    precision: Precision,
    limits: &ModelLimits,
) -> Result<Translator, LoadError> {
    catch_unwind(AssertUnwindSafe(|| {
        let checkpoint = Checkpoint::open(dir)?;
        let m = &checkpoint.meta.model;
        over("img_size", m.img_size, limits.max_img_size)?;
        over("ch", m.ch, limits.max_ch)?;
        over("n_res", m.n_res, limits.max_n_res)?;
        let params = m.generator_params();
        if params > limits.max_params {
            return Err(LoadError::OverLimit {
                key: "generator parameters",
                value: params,
                limit: limits.max_params,
            });
        }
        let t =
            Translator::from_checkpoint(checkpoint, direction, device)?.with_precision(precision);
        warm_up(&t).map_err(LoadError::WarmUp)?;
        Ok(t)
    }))
    .unwrap_or(Err(LoadError::Panic))
}

impl Registry {
    /// Loads every style (the first load must succeed) and starts its worker.
    pub(crate) fn load(cfg: &Config, metrics: Arc<Metrics>) -> Result<Registry, RegistryError> {
        let device = cfg.device.resolve().map_err(|cause| RegistryError::Load {
            style: "*".into(),
            cause: cause.into(),
        })?;
        let batch = BatchConfig {
            max_batch: cfg.max_batch,
            max_wait: cfg.max_wait,
        };
        let mut registry = Registry {
            styles: BTreeMap::new(),
            default: cfg.default_style_name(),
            device,
            precision: cfg.precision,
            limits: cfg.models.clone(),
            jitter: cfg.reload_jitter,
            poll: cfg.reload_poll,
            metrics,
        };
        for (name, sc) in &cfg.styles {
            let style = registry.load_style(name, sc, batch, cfg)?;
            registry.styles.insert(name.clone(), Arc::new(style));
        }
        Ok(registry)
    }

    fn load_style(
        &self,
        name: &str,
        sc: &StyleConfig,
        batch: BatchConfig,
        cfg: &Config,
    ) -> Result<Style, RegistryError> {
        let load_err = |cause: LoadError| RegistryError::Load {
            style: name.to_string(),
            cause,
        };
        let watched = is_run_dir(&sc.path);
        // Read the pointer before loading: if it moves meanwhile, the poller sees a change.
        let current = if watched {
            read_latest(&sc.path).map_err(|e| load_err(e.into()))?
        } else {
            None
        };
        let path = match &current {
            Some(n) => sc.path.join(n),
            None => sc.path.clone(),
        };
        let t = open(
            &path,
            sc.direction,
            self.device,
            self.precision,
            &self.limits,
        )
        .map_err(load_err)?;
        tracing::info!(style = name, checkpoint = %t.dir().display(), iteration = t.meta().iteration, "loaded");
        let batcher = Batcher::start(name, t, batch, self.metrics.clone()).map_err(|cause| {
            RegistryError::Thread {
                style: name.to_string(),
                cause,
            }
        })?;
        Ok(Style {
            name: name.to_string(),
            direction: sc.direction,
            batcher,
            slots: Slots::new(cfg.queue_depth, cfg.job_slots()),
            path: sc.path.clone(),
            watched,
            pointer: Mutex::new(Pointer {
                current,
                pending: None,
            }),
        })
    }

    pub(crate) fn get(&self, name: Option<&str>) -> Option<&Arc<Style>> {
        self.styles.get(name.unwrap_or(&self.default))
    }

    pub(crate) fn default_name(&self) -> &str {
        &self.default
    }

    pub(crate) fn styles(&self) -> impl Iterator<Item = &Arc<Style>> {
        self.styles.values()
    }

    pub(crate) fn all_ready(&self) -> bool {
        self.styles.values().all(|s| s.batcher.is_ready())
    }

    /// Checks every watched style once; returns how many swapped.
    pub(crate) fn poll_once(&self) -> usize {
        let mut swapped = 0;
        for style in self.styles.values().filter(|s| s.watched) {
            if self.poll_style(style) {
                swapped += 1;
            }
        }
        swapped
    }

    /// A random delay in `[0, jitter)`.
    fn jitter(&self) -> Duration {
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        let mut b = [0u8; 8];
        let r = getrandom::fill(&mut b)
            .map(|()| u64::from_le_bytes(b))
            .unwrap_or(0);
        Duration::from_nanos(r % (self.jitter.as_nanos().min(u128::from(u64::MAX)) as u64).max(1))
    }

    fn poll_style(&self, style: &Style) -> bool {
        let name = match read_latest(&style.path) {
            Ok(Some(n)) => n,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(style = %style.name, error = %e, "cannot read the latest pointer");
                return false;
            }
        };
        {
            let mut p = style.pointer.lock().unwrap_or_else(|e| e.into_inner());
            if p.current.as_deref() == Some(&name) {
                p.pending = None;
                return false;
            }
            match &p.pending {
                Some(pending) if pending.name == name => {
                    if Instant::now() < pending.due {
                        return false;
                    }
                }
                _ => {
                    // A checkpoint not seen before: load it after this instance's jitter.
                    p.pending = Some(Pending {
                        name: name.clone(),
                        due: Instant::now() + self.jitter(),
                        failures: 0,
                    });
                    if !self.jitter.is_zero() {
                        return false;
                    }
                }
            }
        }
        let dir = style.path.join(&name);
        let loaded = open(
            &dir,
            style.direction,
            self.device,
            self.precision,
            &self.limits,
        );
        let mut p = style.pointer.lock().unwrap_or_else(|e| e.into_inner());
        match loaded {
            Ok(t) => {
                tracing::info!(style = %style.name, checkpoint = %name, "reloaded");
                style.batcher.offer(t);
                p.current = Some(name);
                p.pending = None;
                self.metrics.reload(&style.name, "ok");
                true
            }
            Err(e) => {
                let failures = p.pending.as_ref().map_or(0, |x| x.failures) + 1;
                let wait = backoff(self.poll, failures);
                tracing::error!(style = %style.name, checkpoint = %name, error = %e, failures,
                    retry_in = ?wait, "refusing new checkpoint for now; still serving the previous one");
                self.metrics.reload(&style.name, e.reason());
                p.pending = Some(Pending {
                    name,
                    due: Instant::now() + wait,
                    failures,
                });
                false
            }
        }
    }
}

/// Polls every `period` until the registry is dropped.
pub(crate) fn spawn_poller(registry: Weak<Registry>, period: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("reload-poller".into())
        .spawn(move || {
            loop {
                std::thread::sleep(period);
                match registry.upgrade() {
                    Some(r) => {
                        r.poll_once();
                    }
                    None => return,
                }
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let poll = Duration::from_secs(1);
        assert_eq!(backoff(poll, 1), Duration::from_secs(10));
        assert_eq!(backoff(poll, 2), Duration::from_secs(20));
        assert_eq!(backoff(poll, 3), Duration::from_secs(40));
        assert_eq!(backoff(poll, 40), MAX_BACKOFF);
    }
}
