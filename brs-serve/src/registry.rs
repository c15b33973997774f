//! The named styles, each a generator behind its own batcher, and the hot-reload poller that
//! watches each style's `latest` pointer.
//!
//! A style whose model has not been deployed yet (its directory, its `latest` pointer or the
//! checkpoint that pointer names is not there) does not stop the server: a fresh deployment starts
//! before anyone has copied a trained run onto the shared file system, and an instance that exited
//! would never become healthy. The style waits: it is not ready, its requests are refused with a
//! clear 503, and the poller loads its first checkpoint as soon as one appears. Only absence
//! waits; a checkpoint that is there but fails to load at start is an error, as it would be on
//! every retry.
//!
//! A checkpoint is trusted only after it proves itself: its meta.json is checked (integrity, and
//! every size against `[models]`) before anything is allocated, the load (with `engine = "auto"`,
//! the timing of both engines, brs-engine) and a warm-up forward pass run inside `catch_unwind`,
//! and only then is the generator handed to the batcher while the old one keeps serving.
//! Instances sharing a run directory load a new checkpoint after a random delay, so they do not
//! all pause at once; a load that fails is counted by reason and retried with a growing delay
//! (the next checkpoint is tried at once).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use brs_engine::{Engine, EngineError, EngineOptions, EngineSpec, OnnxLanes};
use brs_model::checkpoint::{Checkpoint, LATEST, META, read_latest};
use brs_model::{Direction, ModelError};

use crate::admission::Slots;
use crate::batcher::{BatchConfig, Batcher, warm_up};
use crate::config::{Config, ModelLimits, StyleConfig};
use crate::error::ServeError;
use crate::memory::Activity;
use crate::metrics::Metrics;
use crate::state::Role;

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
    /// The engine could not be built (ONNX Runtime missing, the export or its session failed).
    #[error(transparent)]
    Engine(Box<EngineError>),
    #[error("loading panicked")]
    Panic,
    #[error("warm-up failed: {0}")]
    WarmUp(String),
}

impl From<EngineError> for LoadError {
    fn from(e: EngineError) -> LoadError {
        match e {
            // A checkpoint's failure is labelled as it is whichever engine met it.
            EngineError::Model(m) => LoadError::Model(m),
            e => LoadError::Engine(Box::new(e)),
        }
    }
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
            LoadError::Engine(_) => "engine",
            LoadError::Panic => "panic",
            LoadError::WarmUp(_) => "warm_up",
        }
    }
}

/// Why a style has no model to serve yet. Names only what the style's own directory holds,
/// never a path on the server, as clients read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Waiting {
    /// Nothing at the style's path yet.
    #[error("its directory {dir:?} does not exist yet")]
    NoDirectory { dir: String },
    #[error("its run directory has no `latest` pointer yet")]
    NoLatest,
    /// `latest` was written before the checkpoint it names was copied in (or that checkpoint
    /// was removed).
    #[error("`latest` names {checkpoint:?}, which is not a checkpoint directory (yet)")]
    NoCheckpoint { checkpoint: String },
    /// The first checkpoint to appear failed to load; it is retried after a backoff, and a
    /// newer one is tried at once.
    #[error("its first checkpoint {checkpoint:?} failed to load ({reason}); retrying")]
    LoadFailed {
        checkpoint: String,
        reason: &'static str,
    },
}

impl Waiting {
    /// What an empty or absent `path` is waiting for.
    fn absent(path: &Path) -> Waiting {
        if path.is_dir() {
            Waiting::NoLatest
        } else {
            Waiting::NoDirectory {
                dir: file_name(path),
            }
        }
    }

    fn after(checkpoint: String, e: &LoadError) -> Waiting {
        match e {
            LoadError::Model(ModelError::NotACheckpoint { .. }) => {
                Waiting::NoCheckpoint { checkpoint }
            }
            _ => Waiting::LoadFailed {
                checkpoint,
                reason: e.reason(),
            },
        }
    }

    /// A stable, machine-readable name of the reason.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Waiting::NoDirectory { .. } => "no_directory",
            Waiting::NoLatest => "no_latest",
            Waiting::NoCheckpoint { .. } => "no_checkpoint",
            Waiting::LoadFailed { .. } => "load_failed",
        }
    }

    /// The name of what is missing: the style's directory, its `latest` pointer, or the
    /// checkpoint directory `latest` names.
    pub(crate) fn missing(&self) -> &str {
        match self {
            Waiting::NoDirectory { dir } => dir,
            Waiting::NoLatest => LATEST,
            Waiting::NoCheckpoint { checkpoint } | Waiting::LoadFailed { checkpoint, .. } => {
                checkpoint
            }
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Why the registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("style {style}: {cause}")]
    Load { style: String, cause: LoadError },
    #[error("style {style}: no model at {path}: {cause}")]
    NoModel {
        style: String,
        path: PathBuf,
        cause: Waiting,
    },
    #[error("could not start the inference thread for style {style}: {cause}")]
    Thread {
        style: String,
        cause: std::io::Error,
    },
    #[error("engine = \"onnx\": {0}")]
    Engine(Box<EngineError>),
}

/// One served style.
#[derive(Debug)]
pub(crate) struct Style {
    pub(crate) name: String,
    pub(crate) direction: Direction,
    pub(crate) batcher: Batcher,
    pub(crate) slots: Slots,
    path: PathBuf,
    pointer: Mutex<Pointer>,
}

/// What the poller knows of a style's `latest`.
#[derive(Debug, Default)]
struct Pointer {
    current: Option<String>,
    /// A newer checkpoint seen, and when to try loading it (jitter, then backoff after failures).
    pending: Option<Pending>,
    /// Why the style has no model yet; `None` once one has been handed to its batcher.
    waiting: Option<Waiting>,
    /// A checkpoint or export directory given directly: served as it is, never polled. Run
    /// directories are watched, and so is a path with nothing at it yet, whichever it becomes.
    fixed: bool,
}

impl Style {
    fn pointer(&self) -> std::sync::MutexGuard<'_, Pointer> {
        self.pointer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the style has no model yet, or `None` when it has one (ready or still warming up).
    pub(crate) fn waiting(&self) -> Option<Waiting> {
        self.pointer().waiting.clone()
    }
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
    engine: EngineOptions,
    limits: ModelLimits,
    jitter: Duration,
    poll: Duration,
    metrics: Arc<Metrics>,
}

fn is_run_dir(path: &Path) -> bool {
    !path.join(META).is_file()
}

/// What a style's path gave at start.
enum First {
    Loaded {
        translator: Box<Engine>,
        /// The name `latest` gave; `None` for a checkpoint directory given directly.
        current: Option<String>,
    },
    Waiting(Waiting),
}

/// Whether start goes on without a style whose model is not there yet. A Lambda function's
/// models ship with it: one missing is a broken package, and an init waiting for it would only
/// time out.
fn waits_for_models(role: Role) -> bool {
    role != Role::Lambda
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

/// Opens `dir`, checks its model against `limits` before allocating it, loads the generator of
/// `direction` with the engine `engine` asks for and warms it up, all inside `catch_unwind`.
fn open(
    dir: &Path,
    direction: Direction,
    engine: &EngineOptions,
    limits: &ModelLimits,
) -> Result<Engine, LoadError> {
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
        let t = Engine::load(checkpoint, direction, engine)?;
        if let Some(note) = t.note() {
            tracing::warn!(checkpoint = %dir.display(), note,
                "engine = \"auto\" could not time ONNX Runtime");
        }
        warm_up(&t).map_err(LoadError::WarmUp)?;
        Ok(t)
    }))
    .unwrap_or(Err(LoadError::Panic))
}

impl Registry {
    /// Loads every style and starts its worker. A style whose model is not there yet waits for it
    /// (except in a Lambda function); one that is there must load.
    pub(crate) fn load(
        cfg: &Config,
        metrics: Arc<Metrics>,
        activity: Arc<Activity>,
        role: Role,
    ) -> Result<Registry, RegistryError> {
        let device = cfg.device.resolve().map_err(|cause| RegistryError::Load {
            style: "*".into(),
            cause: cause.into(),
        })?;
        let batch = BatchConfig {
            max_batch: cfg.max_batch,
            activity,
            max_wait: cfg.max_wait,
            turn_quantum: cfg.clients.turn_quantum,
        };
        let engine = EngineOptions {
            engine: cfg.engine,
            device,
            precision: cfg.precision,
            // A server gives memory back after a burst (`memory`): ONNX Runtime's arena would
            // hold the peak of its largest batch for good.
            onnx_arena: false,
            // Batches run side by side where that was faster at load; max_batch = 1 turns the
            // lanes off, their copies of the weights and their timing with them.
            onnx_lanes: if cfg.max_batch >= 2 {
                cfg.onnx_lanes
            } else {
                OnnxLanes::Off
            },
        };
        // Asked for by name (or the only engine of a build without libtorch), ONNX Runtime must
        // run here and be there at start, whether or not a model is yet.
        if cfg.engine == EngineSpec::Onnx || !brs_engine::TORCH {
            engine
                .check()
                .and_then(|()| {
                    brs_image::detect::init_onnxruntime(None)
                        .map_err(|e| EngineError::Runtime(e.to_string()))
                })
                .map_err(|e| RegistryError::Engine(Box::new(e)))?;
        }
        let mut registry = Registry {
            styles: BTreeMap::new(),
            default: cfg.default_style_name(),
            engine,
            limits: cfg.models.clone(),
            jitter: cfg.reload_jitter,
            poll: cfg.reload_poll,
            metrics,
        };
        for (name, sc) in &cfg.styles {
            let style = registry.load_style(name, sc, batch.clone(), cfg, role)?;
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
        role: Role,
    ) -> Result<Style, RegistryError> {
        let first = self.first(sc).map_err(|cause| RegistryError::Load {
            style: name.to_string(),
            cause,
        })?;
        let fixed = matches!(first, First::Loaded { current: None, .. });
        let (translator, current, waiting) = match first {
            First::Loaded {
                translator,
                current,
            } => {
                tracing::info!(style = name, checkpoint = %translator.dir().display(),
                    iteration = translator.meta().iteration, engine = %translator.describe(),
                    "loaded");
                (Some(*translator), current, None)
            }
            First::Waiting(cause) if waits_for_models(role) => {
                tracing::warn!(style = name, path = %sc.path.display(), reason = %cause,
                    "no model yet; starting without it, not ready until one appears");
                (None, None, Some(cause))
            }
            First::Waiting(cause) => {
                return Err(RegistryError::NoModel {
                    style: name.to_string(),
                    path: sc.path.clone(),
                    cause,
                });
            }
        };
        let batcher =
            Batcher::start(name, translator, batch, self.metrics.clone()).map_err(|cause| {
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
            pointer: Mutex::new(Pointer {
                current,
                pending: None,
                waiting,
                fixed,
            }),
        })
    }

    /// Opens what `sc.path` holds now: a checkpoint directory, or the checkpoint its `latest`
    /// names. Absence (of the directory, of `latest`, of the checkpoint it names) is waited
    /// for; anything else that fails is an error.
    fn first(&self, sc: &StyleConfig) -> Result<First, LoadError> {
        let open = |dir: &Path| open(dir, sc.direction, &self.engine, &self.limits);
        if !is_run_dir(&sc.path) {
            return Ok(First::Loaded {
                translator: Box::new(open(&sc.path)?),
                current: None,
            });
        }
        // Read the pointer before loading: if it moves meanwhile, the poller sees a change.
        let Some(name) = read_latest(&sc.path)? else {
            return Ok(First::Waiting(Waiting::absent(&sc.path)));
        };
        match open(&sc.path.join(&name)) {
            Ok(translator) => Ok(First::Loaded {
                translator: Box::new(translator),
                current: Some(name),
            }),
            Err(e @ LoadError::Model(ModelError::NotACheckpoint { .. })) => {
                Ok(First::Waiting(Waiting::after(name, &e)))
            }
            Err(e) => Err(e),
        }
    }

    /// The style `name`, if it can take work now. Asked before a request takes a queue slot or
    /// its upload is read, so a style still waiting for its model costs a client nothing.
    pub(crate) fn serving(&self, name: &str) -> Result<Arc<Style>, ServeError> {
        let style = self
            .get(Some(name))
            .ok_or_else(|| ServeError::UnknownStyle(name.to_string()))?;
        match style.waiting() {
            Some(why) => Err(ServeError::ModelUnavailable {
                style: name.to_string(),
                reason: why.to_string(),
            }),
            None => Ok(style.clone()),
        }
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

    /// Every style serves or waits for its first model: waiting is the deployment's state (no
    /// instance has that model), not this instance's fault.
    pub(crate) fn all_ready_or_waiting(&self) -> bool {
        self.styles
            .values()
            .all(|s| s.batcher.is_ready() || s.waiting().is_some())
    }

    /// The styles waiting for their first model, and why.
    pub(crate) fn waiting(&self) -> Vec<(&str, Waiting)> {
        self.styles
            .values()
            .filter_map(|s| s.waiting().map(|w| (s.name.as_str(), w)))
            .collect()
    }

    /// Checks every watched style once; returns how many swapped.
    pub(crate) fn poll_once(&self) -> usize {
        let mut swapped = 0;
        for style in self.styles.values() {
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
        let (fixed, waiting) = {
            let p = style.pointer();
            (p.fixed, p.waiting.is_some())
        };
        if fixed {
            return false;
        }
        // A path with nothing at it at start may become a checkpoint directory given directly:
        // served as it would have been had it been there, then no longer watched.
        let becomes_fixed = waiting && !is_run_dir(&style.path);
        let name = if becomes_fixed {
            file_name(&style.path)
        } else {
            match read_latest(&style.path) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    let mut p = style.pointer();
                    if p.waiting.is_some() {
                        p.waiting = Some(Waiting::absent(&style.path));
                    }
                    return false;
                }
                Err(e) => {
                    tracing::warn!(style = %style.name, error = %e, "cannot read the latest pointer");
                    return false;
                }
            }
        };
        {
            let mut p = style.pointer();
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
                    // A checkpoint not seen before: load it after this instance's jitter, so the
                    // instances sharing the run do not all pause at once. A style with no model
                    // yet pauses no one, and loads at once.
                    let delay = if p.waiting.is_some() {
                        Duration::ZERO
                    } else {
                        self.jitter()
                    };
                    p.pending = Some(Pending {
                        name: name.clone(),
                        due: Instant::now() + delay,
                        failures: 0,
                    });
                    if !delay.is_zero() {
                        return false;
                    }
                }
            }
        }
        let dir = if becomes_fixed {
            style.path.clone()
        } else {
            style.path.join(&name)
        };
        let loaded = open(&dir, style.direction, &self.engine, &self.limits);
        let mut p = style.pointer();
        match loaded {
            Ok(t) => {
                if p.waiting.is_some() {
                    tracing::info!(style = %style.name, checkpoint = %name,
                        iteration = t.meta().iteration, engine = %t.describe(),
                        "first model loaded; the style is no longer waiting");
                } else {
                    tracing::info!(style = %style.name, checkpoint = %name,
                        engine = %t.describe(), "reloaded");
                }
                // Offered before the style stops waiting, so work admitted from now on finds
                // the model that will run it.
                style.batcher.offer(t);
                p.current = (!becomes_fixed).then_some(name);
                p.fixed = becomes_fixed;
                p.pending = None;
                p.waiting = None;
                self.metrics.reload(&style.name, "ok");
                true
            }
            Err(e) => {
                let failures = p.pending.as_ref().map_or(0, |x| x.failures) + 1;
                let wait = backoff(self.poll, failures);
                self.metrics.reload(&style.name, e.reason());
                if p.waiting.is_some() {
                    tracing::error!(style = %style.name, checkpoint = %name, error = %e, failures,
                        retry_in = ?wait, "refusing the first checkpoint for now; the style still has no model");
                    p.waiting = Some(Waiting::after(name.clone(), &e));
                } else {
                    tracing::error!(style = %style.name, checkpoint = %name, error = %e, failures,
                        retry_in = ?wait, "refusing new checkpoint for now; still serving the previous one");
                }
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

    fn config(path: &Path) -> Config {
        let mut cfg = Config {
            reload_jitter: Duration::ZERO,
            ..Config::default()
        };
        cfg.styles.insert(
            "s".into(),
            StyleConfig {
                path: path.to_path_buf(),
                direction: Direction::A2B,
            },
        );
        cfg
    }

    fn load(path: &Path, role: Role) -> Result<Registry, RegistryError> {
        Registry::load(
            &config(path),
            Arc::new(Metrics::new()),
            Arc::default(),
            role,
        )
    }

    fn export(run: &Path, iteration: u64) -> PathBuf {
        let tiny = brs_testkit::model::tiny_config();
        brs_model::translator::write_random_export(run, &tiny, 1, iteration).expect("export")
    }

    /// Issue 26: an absent model waits (a fresh deployment); a broken one still fails start.
    #[test]
    fn start_waits_for_an_absent_model_and_refuses_a_broken_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("run");
        let r = load(&run, Role::Server).expect("starts without its model");
        let style = r.get(None).expect("style s").clone();
        assert_eq!(
            style.waiting(),
            Some(Waiting::NoDirectory { dir: "run".into() })
        );
        let refused = r.serving("s").expect_err("no model to serve");
        assert_eq!(refused.code(), "model_unavailable", "{refused}");
        assert!(!style.batcher.is_ready());
        assert!(
            r.all_ready_or_waiting(),
            "waiting is no fault of the instance"
        );
        assert!(
            matches!(load(&run, Role::Lambda), Err(RegistryError::NoModel { .. })),
            "a Lambda function's models ship with it: absent is broken"
        );

        std::fs::create_dir(&run).expect("mkdir");
        assert_eq!(r.poll_once(), 0);
        assert_eq!(style.waiting(), Some(Waiting::NoLatest));
        export(&run, 1);
        assert_eq!(r.poll_once(), 1);
        assert_eq!(style.waiting(), None);
        assert!(r.serving("s").is_ok());
        assert_eq!(style.batcher.loaded().map(|m| m.iteration), Some(1));
        let t = Instant::now();
        while !style.batcher.is_ready() {
            assert!(t.elapsed() < Duration::from_secs(30), "never ready");
            std::thread::sleep(Duration::from_millis(20));
        }

        let broken = dir.path().join("broken");
        let weights = export(&broken, 2).join("genA2B.safetensors");
        let mut bytes = std::fs::read(&weights).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&weights, bytes).expect("corrupt");
        match load(&broken, Role::Server) {
            Err(RegistryError::Load { cause, .. }) => assert_eq!(cause.reason(), "corrupt"),
            other => panic!("a corrupt checkpoint must fail start: {other:?}"),
        }
    }

    /// A reload refused by the engine is counted as such; a checkpoint's own failure keeps its
    /// label whichever engine met it.
    #[test]
    fn engine_failures_are_labelled_apart_from_the_checkpoints() {
        let engine = LoadError::from(EngineError::Runtime("no library".into()));
        assert_eq!(engine.reason(), "engine");
        let corrupt = LoadError::from(EngineError::Model(ModelError::Corrupt {
            path: PathBuf::from("x"),
            reason: "truncated".into(),
        }));
        assert_eq!(corrupt.reason(), "corrupt");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let poll = Duration::from_secs(1);
        assert_eq!(backoff(poll, 1), Duration::from_secs(10));
        assert_eq!(backoff(poll, 2), Duration::from_secs(20));
        assert_eq!(backoff(poll, 3), Duration::from_secs(40));
        assert_eq!(backoff(poll, 40), MAX_BACKOFF);
    }
}
