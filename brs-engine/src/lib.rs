//! brs-engine: one generator run by libtorch or by ONNX Runtime, the faster of the two kept on
//! this machine; what brs-serve, brs-lambda and `brs-train translate` run.
//!
//! libtorch runs the checkpoint in the configured precision (bfloat16 where `precision` resolves
//! to it, float32 elsewhere). ONNX Runtime runs float32 only, from an in-process export of the
//! same checkpoint ([`brs_model::onnx`], see the `onnx` module). In float32 the two are roundings
//! of the same network: within 1e-4 of each other in [-1, 1] on the tests' images
//! (tests/parity.rs), far inside a grey level (2/255).
//!
//! Which is faster depends on the CPU (libtorch's bfloat16 wins where the CPU multiplies bfloat16
//! natively; on AVX2-only CPUs ONNX Runtime's float32 was the faster in issue 25), on the model
//! and on the thread count, so [`EngineSpec::Auto`] measures instead of guessing: at load it times
//! a few forward passes of each on one image of the model's size and keeps the faster, one engine
//! at a time, so two copies of the weights never live at once (the full TensorFlow-flavour
//! generator alone holds 1.1 GB).
//!
//! Images go in and out as a [`Batch`] of float32, which needs no libtorch: without the `torch`
//! feature the crate links ONNX Runtime alone (the onnx serving bundle), `auto` means ONNX
//! Runtime, and `torch` is refused by name.

mod batch;
mod onnx;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

#[cfg(feature = "torch")]
use brs_model::Translator;
use brs_model::checkpoint::{Checkpoint, CheckpointKind, CheckpointMeta};
use brs_model::device::Device;
use brs_model::{DeviceSpec, Direction, ModelConfig, ModelError, Precision};
use serde::{Deserialize, Serialize};
#[cfg(feature = "torch")]
use tch::{Kind, Tensor};

pub use batch::{Batch, BatchError};
use onnx::OnnxGenerator;

/// Which engine runs the generator, as a user asks for it (`engine` in brs-serve's config,
/// `--engine` of `brs-train translate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineSpec {
    /// Time both at load and keep the faster. libtorch alone on a GPU (ONNX Runtime runs on the
    /// CPU here), and when ONNX Runtime cannot be loaded or fails to load the model (with a note
    /// saying why: [`Engine::note`]).
    #[default]
    Auto,
    /// libtorch, in the configured precision.
    Torch,
    /// ONNX Runtime, float32, on the CPU.
    Onnx,
}

impl EngineSpec {
    /// Refuses what cannot run, naming what to change: ONNX Runtime computes float32 on the CPU
    /// only. `device` may still be `auto`; [`Engine::load`] checks the device it resolved to.
    pub fn check(self, precision: Precision, device: DeviceSpec) -> Result<(), String> {
        if !TORCH {
            return only_onnx_runtime(self, precision, device);
        }
        if self != EngineSpec::Onnx {
            return Ok(());
        }
        if precision == Precision::Bf16 {
            return Err(
                "engine \"onnx\" runs float32 only: set precision to \"auto\" or \"f32\", or the \
                 engine to \"torch\" or \"auto\""
                    .into(),
            );
        }
        if let DeviceSpec::Cuda(_) = device {
            return Err(format!(
                "engine \"onnx\" runs on the CPU, not on {device}: set device to \"cpu\", or the \
                 engine to \"torch\" or \"auto\""
            ));
        }
        Ok(())
    }
}

/// [`EngineSpec::check`] in a build without libtorch, where ONNX Runtime runs every model:
/// float32, on the CPU.
fn only_onnx_runtime(
    spec: EngineSpec,
    precision: Precision,
    device: DeviceSpec,
) -> Result<(), String> {
    if spec == EngineSpec::Torch {
        return Err(NO_TORCH.into());
    }
    if precision == Precision::Bf16 {
        return Err(format!(
            "precision \"bf16\": {WITHOUT_TORCH}, float32 only: set precision to \"auto\" or \"f32\""
        ));
    }
    if let DeviceSpec::Cuda(_) = device {
        return Err(format!(
            "device \"{device}\": {WITHOUT_TORCH}, on the CPU only: set device to \"cpu\" or \"auto\""
        ));
    }
    Ok(())
}

impl fmt::Display for EngineSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineSpec::Auto => "auto",
            EngineSpec::Torch => "torch",
            EngineSpec::Onnx => "onnx",
        })
    }
}

impl FromStr for EngineSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(EngineSpec::Auto),
            "torch" | "libtorch" => Ok(EngineSpec::Torch),
            "onnx" | "onnxruntime" | "ort" => Ok(EngineSpec::Onnx),
            other => Err(format!("engine {other:?} (allowed: auto, torch, onnx)")),
        }
    }
}

/// Whether this build has libtorch (feature `torch`); without it ONNX Runtime runs every model
/// and `auto` means ONNX Runtime.
pub const TORCH: bool = cfg!(feature = "torch");

/// What a build without libtorch is, in its refusals.
const WITHOUT_TORCH: &str = "this build has no libtorch (the onnx bundle) and runs ONNX Runtime";

const NO_TORCH: &str = "engine \"torch\": this build has no libtorch (the onnx bundle): set engine \
    to \"onnx\" or \"auto\", or run the cpu bundle";

/// The engine running a loaded generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Torch,
    Onnx,
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Torch => "torch",
            EngineKind::Onnx => "onnx",
        })
    }
}

/// One engine's time for one image, measured at load by [`EngineSpec::Auto`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timing {
    pub engine: EngineKind,
    /// The number format it ran in: `f32` or `bf16`.
    pub precision: &'static str,
    /// The fastest of its timed forward passes, in milliseconds: the least disturbed by whatever
    /// else the machine was doing.
    pub ms: f64,
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:.1} ms", self.engine, self.precision, self.ms)
    }
}

/// Whether ONNX Runtime gets single-thread sessions ("lanes") beside its session on every core,
/// and when images run side by side on them (see the `onnx` module). As a config value: `"off"`,
/// `"timed"` or `"always"`; `false` and `true` are `"off"` and `"timed"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "LanesKey")]
pub enum OnnxLanes {
    /// One session on every core.
    Off,
    /// Lanes; for each batch size from 2, the faster way timed at load.
    Timed,
    /// Lanes; waiting images always side by side, nothing timed (for a host where the timing at
    /// load is not what a busy server gets, or was measured otherwise).
    Always,
}

/// What a config may write for [`OnnxLanes`]: the mode's name, or a flag (the key's first form).
#[derive(Deserialize)]
#[serde(untagged)]
enum LanesKey {
    Flag(bool),
    Name(String),
}

impl TryFrom<LanesKey> for OnnxLanes {
    type Error = String;

    fn try_from(key: LanesKey) -> Result<Self, String> {
        match key {
            LanesKey::Flag(false) => Ok(OnnxLanes::Off),
            LanesKey::Flag(true) => Ok(OnnxLanes::Timed),
            LanesKey::Name(name) => match name.as_str() {
                "off" => Ok(OnnxLanes::Off),
                "timed" => Ok(OnnxLanes::Timed),
                "always" => Ok(OnnxLanes::Always),
                other => Err(format!(
                    "unknown onnx_lanes {other:?}: expected \"off\", \"timed\" or \"always\" \
                     (or false / true)"
                )),
            },
        }
    }
}

/// How ONNX Runtime runs a batch of `images`, measured at load when it has lanes: the whole batch
/// in one session on every core, or split over single-thread sessions side by side. The faster
/// runs batches of that size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Regime {
    pub images: usize,
    /// Milliseconds per image, the batch in one session on every core.
    pub one_session_ms: f64,
    /// Milliseconds per image, the batch split over single-thread sessions run at once.
    pub side_by_side_ms: f64,
    pub side_by_side: bool,
}

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} images: {} ({:.1} ms/image side by side, {:.1} in one session)",
            self.images,
            if self.side_by_side {
                "side by side"
            } else {
                "one session"
            },
            self.side_by_side_ms,
            self.one_session_ms
        )
    }
}

/// Why an engine could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The checkpoint (or libtorch's load of it) failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the ONNX engine needs ONNX Runtime: {0}")]
    Runtime(String),
    #[error("could not create a private temporary directory for the ONNX export: {0}")]
    TempDir(std::io::Error),
    #[error("could not export the generator to ONNX: {0}")]
    Export(ModelError),
    #[error("ONNX Runtime could not load the exported generator: {0}")]
    Session(String),
    #[error("ONNX Runtime inference failed: {0}")]
    Inference(String),
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The engine asked for cannot run here (see [`EngineSpec::check`]).
    #[error("{0}")]
    Unsupported(String),
}

/// How to load a generator.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    pub engine: EngineSpec,
    /// Where libtorch runs; ONNX Runtime always runs on the CPU.
    pub device: Device,
    /// libtorch's number format; ONNX Runtime's is float32 whatever this says.
    pub precision: Precision,
    /// Whether ONNX Runtime keeps the memory of its largest pass for the session's life (its
    /// arena: batches run faster) or takes activations from malloc as libtorch does, so that a
    /// server gives memory back after a burst (brs-serve's memory watcher) instead of holding
    /// the peak of its largest batch.
    pub onnx_arena: bool,
    /// Whether ONNX Runtime gets single-thread sessions beside its session on every core, to run
    /// the images of a batch side by side where that was measured faster or is asked for (see the
    /// `onnx` module): for callers that batch; each holds a copy of the weights, and the timing
    /// at load takes a few batches.
    pub onnx_lanes: OnnxLanes,
}

impl EngineOptions {
    /// Refuses what cannot run ([`EngineSpec::check`]) on the device resolved.
    pub fn check(&self) -> Result<(), EngineError> {
        self.engine
            .check(self.precision, DeviceSpec::Cpu)
            .map_err(EngineError::Unsupported)?;
        if self.engine == EngineSpec::Onnx && self.device != Device::Cpu {
            return Err(EngineError::Unsupported(format!(
                "engine \"onnx\" runs on the CPU, and the device resolved to {:?}: set device to \
                 \"cpu\", or the engine to \"torch\" or \"auto\"",
                self.device
            )));
        }
        Ok(())
    }
}

/// Timed forward passes per engine for `auto`, after one untimed pass each (the first pays for
/// kernel selection and memory planning; ONNX Runtime's also proves it runs the model).
const TIMED_PASSES: usize = 3;

enum Runner {
    #[cfg(feature = "torch")]
    Torch(Box<Translator>),
    Onnx(OnnxGenerator),
}

/// A generator ready for inference with the engine chosen for it, and the metadata of the
/// checkpoint it came from.
pub struct Engine {
    runner: Runner,
    checkpoint: Checkpoint,
    direction: Direction,
    timings: Vec<Timing>,
    regimes: Vec<Regime>,
    note: Option<String>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("engine", &self.kind())
            .field("checkpoint", &self.checkpoint.dir)
            .field("direction", &self.direction)
            .field("timings", &self.timings)
            .finish()
    }
}

impl Engine {
    /// Loads the generator of `direction` from a run, checkpoint or export directory.
    pub fn open(
        path: &std::path::Path,
        direction: Direction,
        opts: &EngineOptions,
    ) -> Result<Engine, EngineError> {
        Engine::load(Checkpoint::open(path)?, direction, opts)
    }

    /// Loads the generator of `direction` with the engine `opts` asks for; `auto` times both
    /// and keeps the faster. Every file is verified as it is read; nothing is half-loaded on error.
    pub fn load(
        checkpoint: Checkpoint,
        direction: Direction,
        opts: &EngineOptions,
    ) -> Result<Engine, EngineError> {
        opts.check()?;
        check_direction(&checkpoint, direction)?;
        let only = |runner| (runner, Vec::new(), None);
        let (mut runner, timings, note) =
            match opts.engine {
                #[cfg(feature = "torch")]
                EngineSpec::Torch => only(Runner::Torch(Box::new(torch(
                    &checkpoint,
                    direction,
                    opts,
                )?))),
                // Refused by `opts.check()` above.
                #[cfg(not(feature = "torch"))]
                EngineSpec::Torch => return Err(EngineError::Unsupported(NO_TORCH.into())),
                EngineSpec::Onnx => only(Runner::Onnx(OnnxGenerator::load(
                    &checkpoint,
                    direction,
                    opts,
                )?)),
                // ONNX Runtime runs on the CPU here: no contest with a GPU.
                #[cfg(feature = "torch")]
                EngineSpec::Auto if opts.device != Device::Cpu => only(Runner::Torch(Box::new(
                    torch(&checkpoint, direction, opts)?,
                ))),
                EngineSpec::Auto => auto(&checkpoint, direction, opts)?,
            };
        let regimes = match &mut runner {
            Runner::Onnx(g) if opts.onnx_lanes == OnnxLanes::Always => {
                g.set_side_by_side(vec![true]);
                Vec::new()
            }
            Runner::Onnx(g) => regimes(g, &checkpoint.meta.model)?,
            #[cfg(feature = "torch")]
            Runner::Torch(_) => Vec::new(),
        };
        Ok(Engine {
            runner,
            checkpoint,
            direction,
            timings,
            regimes,
            note,
        })
    }

    /// The translated batch [N, C, S, S] in [-1, 1] for a batch of the model's size in [-1, 1].
    pub fn translate_batch(&self, input: &Batch) -> Result<Batch, EngineError> {
        match &self.runner {
            #[cfg(feature = "torch")]
            Runner::Torch(t) => Batch::from_tensor(&t.translate(&input.to_tensor())?),
            Runner::Onnx(g) => g.translate(input, self.config()),
        }
    }

    /// [`translate_batch`](Self::translate_batch) on tensors: the translated batch, float32 on
    /// the CPU.
    #[cfg(feature = "torch")]
    pub fn translate(&self, input: &Tensor) -> Result<Tensor, EngineError> {
        match &self.runner {
            Runner::Torch(t) => Ok(t.translate(input)?),
            Runner::Onnx(g) => Ok(g
                .translate(&Batch::from_tensor(input)?, self.config())?
                .to_tensor()),
        }
    }

    /// How many of `n` waiting images to translate in one call of
    /// [`translate_batch`](Self::translate_batch): fewer than `n` only where ONNX Runtime runs
    /// batches side by side and `n` would leave a lane idle while another finishes a second share.
    pub fn fitting_batch(&self, n: usize) -> usize {
        match &self.runner {
            Runner::Onnx(g) => g.fitting_batch(n).max(1),
            #[cfg(feature = "torch")]
            Runner::Torch(_) => n,
        }
    }

    /// ONNX Runtime's single-thread lanes, for callers that run images side by side each from a
    /// thread of its own: `Some` when it has two or more and images side by side were timed
    /// faster at load, else `None` (one batch at a time through [`translate_batch`]).
    ///
    /// [`translate_batch`]: Self::translate_batch
    pub fn independent_lanes(&self) -> Option<LaneSessions<'_>> {
        match &self.runner {
            Runner::Onnx(g) if g.independent_lanes() >= 2 => Some(LaneSessions {
                generator: g,
                config: self.config(),
            }),
            _ => None,
        }
    }

    /// Which engine runs it.
    pub fn kind(&self) -> EngineKind {
        match self.runner {
            #[cfg(feature = "torch")]
            Runner::Torch(_) => EngineKind::Torch,
            Runner::Onnx(_) => EngineKind::Onnx,
        }
    }

    /// The number format inference runs in, as users write it: `f32` or `bf16`.
    pub fn precision_name(&self) -> &'static str {
        match &self.runner {
            #[cfg(feature = "torch")]
            Runner::Torch(t) => precision_name(t.kind()),
            Runner::Onnx(_) => F32,
        }
    }

    /// Both engines' times when `auto` measured them (the faster runs), else empty.
    pub fn timings(&self) -> &[Timing] {
        &self.timings
    }

    /// How ONNX Runtime runs each batch size it was timed for (empty without lanes).
    pub fn regimes(&self) -> &[Regime] {
        &self.regimes
    }

    /// Why `auto` kept libtorch without timing on a CPU: ONNX Runtime missing, or failing to
    /// load the model.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// One line for a log: the engine and precision, and what `auto` measured or why it did not.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.kind(), self.precision_name());
        if !self.timings.is_empty() {
            let t: Vec<String> = self.timings.iter().map(Timing::to_string).collect();
            s.push_str(&format!(", the faster per image ({})", t.join(", ")));
        }
        if !self.regimes.is_empty() {
            let r: Vec<String> = self.regimes.iter().map(Regime::to_string).collect();
            s.push_str(&format!("; batches of {}", r.join(", ")));
        }
        if let Some(lanes) = self.independent_lanes() {
            s.push_str(&format!(
                "; waiting images side by side on {} single-thread lanes",
                lanes.count()
            ));
        }
        if let Some(note) = &self.note {
            s.push_str(&format!(" ({note})"));
        }
        s
    }

    pub fn config(&self) -> &ModelConfig {
        &self.checkpoint.meta.model
    }

    pub fn meta(&self) -> &CheckpointMeta {
        &self.checkpoint.meta
    }

    /// The resolved checkpoint directory the weights came from.
    pub fn dir(&self) -> &std::path::Path {
        &self.checkpoint.dir
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }
}

/// ONNX Runtime's sessions of one generator, shared by threads that each run an image
/// ([`Engine::independent_lanes`]); libtorch's engine is not shared between threads, so this is
/// the only part of an [`Engine`] they hold.
#[derive(Clone, Copy)]
pub struct LaneSessions<'a> {
    generator: &'a OnnxGenerator,
    config: &'a ModelConfig,
}

impl LaneSessions<'_> {
    /// How many images may run at once, one per lane.
    pub fn count(&self) -> usize {
        self.generator.independent_lanes()
    }

    /// Translates a batch on single-thread lane `lane` (below [`count`](Self::count)) while
    /// other threads use the other lanes.
    pub fn translate_on_lane(&self, lane: usize, input: &Batch) -> Result<Batch, EngineError> {
        self.generator.on_lane(lane, input, self.config)
    }

    /// Translates a batch in the session on every core (no lane should run meanwhile).
    pub fn translate_on_all(&self, input: &Batch) -> Result<Batch, EngineError> {
        self.generator.one_session(input, self.config)
    }
}

/// ONNX Runtime's number format, as users write it.
const F32: &str = "f32";

#[cfg(feature = "torch")]
fn precision_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bf16",
        _ => F32,
    }
}

#[cfg(feature = "torch")]
fn torch(
    checkpoint: &Checkpoint,
    direction: Direction,
    opts: &EngineOptions,
) -> Result<Translator, EngineError> {
    Ok(
        Translator::from_checkpoint(checkpoint.clone(), direction, opts.device)?
            .with_precision(opts.precision),
    )
}

/// Whether a checkpoint holds the generator of `direction`: an export holds one. libtorch's load
/// says the same; the ONNX export would only fail to find the file.
fn check_direction(checkpoint: &Checkpoint, direction: Direction) -> Result<(), EngineError> {
    if let (CheckpointKind::Export, Some(d)) = (checkpoint.meta.kind, checkpoint.meta.direction)
        && d != direction
    {
        return Err(ModelError::MissingNetwork {
            path: checkpoint.dir.clone(),
            network: direction.generator().name().into(),
            available: format!("an export of {}", d.generator().name()),
        }
        .into());
    }
    Ok(())
}

/// `auto` without libtorch: nothing to time ONNX Runtime against.
#[cfg(not(feature = "torch"))]
fn auto(
    checkpoint: &Checkpoint,
    direction: Direction,
    opts: &EngineOptions,
) -> Result<(Runner, Vec<Timing>, Option<String>), EngineError> {
    let onnx = OnnxGenerator::load(checkpoint, direction, opts)?;
    Ok((Runner::Onnx(onnx), Vec::new(), None))
}

/// `auto`: times both engines on one image of the model's size and keeps the faster, one engine
/// at a time so that two copies of the weights never live at once (the full TensorFlow-flavour
/// generator holds 1.1 GB in each, and timing both side by side took a server's peak from 1.4 to
/// 3.3 GB): ONNX Runtime is loaded, timed and dropped, then libtorch is loaded and timed, and
/// ONNX Runtime is loaded again if it was the faster. Each engine's time is its fastest of
/// [`TIMED_PASSES`] passes after an untimed one, the least disturbed by a model serving beside it
/// during a hot reload. When ONNX Runtime cannot be loaded or run, libtorch serves with a note.
/// Its lanes, if asked for, are built only with the session that serves.
#[cfg(feature = "torch")]
fn auto(
    checkpoint: &Checkpoint,
    direction: Direction,
    opts: &EngineOptions,
) -> Result<(Runner, Vec<Timing>, Option<String>), EngineError> {
    let weights = checkpoint
        .meta
        .files
        .get(&direction.generator().file_name())
        .map_or(0, |f| f.bytes);
    if weights > AUTO_MAX_WEIGHTS {
        let note = format!(
            "libtorch without timing: the generator's {} MiB of weights are over the {} MiB auto \
             times both engines for (ONNX Runtime's load peaks at about twice the weights); set \
             engine = \"onnx\" to run ONNX Runtime",
            weights >> 20,
            AUTO_MAX_WEIGHTS >> 20
        );
        let runner = Runner::Torch(Box::new(torch(checkpoint, direction, opts)?));
        return Ok((runner, Vec::new(), Some(note)));
    }
    let cfg = &checkpoint.meta.model;
    let x = probe(cfg)?;
    // The contest times one image on every core, so ONNX Runtime's lanes (a copy of the weights
    // each) are built only if it wins, by the load below.
    let contest = EngineOptions {
        onnx_lanes: OnnxLanes::Off,
        ..*opts
    };
    let t_onnx = match OnnxGenerator::load(checkpoint, direction, &contest) {
        Ok(onnx) => fastest(|| onnx.translate(&x, cfg).map(drop)),
        Err(e @ EngineError::Model(_)) => return Err(e),
        // What `auto` promises is the faster engine that runs: a missing library or a failed
        // export costs the speed-up, not the model.
        Err(e) => Err(e),
    };
    // ONNX Runtime's session is gone: its memory goes back before libtorch's copy is loaded.
    brs_model::alloc::release_free_memory();
    let libtorch = torch(checkpoint, direction, opts)?;
    let t_onnx = match t_onnx {
        Ok(t) => t,
        Err(e) => {
            let note = format!("libtorch without timing: {e}");
            return Ok((Runner::Torch(Box::new(libtorch)), Vec::new(), Some(note)));
        }
    };
    let x_torch = x.to_tensor();
    let t_torch = fastest(|| libtorch.translate(&x_torch).map(drop).map_err(Into::into))?;
    let torch_timing = Timing {
        engine: EngineKind::Torch,
        precision: precision_name(libtorch.kind()),
        ms: ms(t_torch),
    };
    let onnx_timing = Timing {
        engine: EngineKind::Onnx,
        precision: F32,
        ms: ms(t_onnx),
    };
    // A tie keeps libtorch, which needs no exported copy of the model.
    if t_onnx >= t_torch {
        return Ok((
            Runner::Torch(Box::new(libtorch)),
            vec![torch_timing, onnx_timing],
            None,
        ));
    }
    drop(libtorch);
    brs_model::alloc::release_free_memory();
    Ok(match OnnxGenerator::load(checkpoint, direction, opts) {
        Ok(onnx) => (Runner::Onnx(onnx), vec![onnx_timing, torch_timing], None),
        // It loaded a moment ago; should it not now (the temp dir filled up, say), libtorch serves.
        Err(e) => (
            Runner::Torch(Box::new(torch(checkpoint, direction, opts)?)),
            vec![torch_timing, onnx_timing],
            Some(format!(
                "libtorch: ONNX Runtime was faster but did not load again: {e}"
            )),
        ),
    })
}

/// Times each batch size from 2 to the lane count both ways (one session on every core, split
/// over the lanes) and keeps the faster for each; larger batches follow the largest timed. A
/// batch is as many probes as images, each way's time its fastest of [`TIMED_PASSES`].
fn regimes(g: &mut OnnxGenerator, cfg: &ModelConfig) -> Result<Vec<Regime>, EngineError> {
    let mut out = Vec::new();
    for images in 2..=g.lanes() {
        let x = Batch::concat(&vec![probe(cfg)?; images])?;
        let one = fastest(|| g.one_session(&x, cfg).map(drop))?;
        let side = fastest(|| g.side_by_side(&x, cfg).map(drop))?;
        let per_image = |d: Duration| ms(d) / images as f64;
        out.push(Regime {
            images,
            one_session_ms: per_image(one),
            side_by_side_ms: per_image(side),
            side_by_side: side < one,
        });
    }
    g.set_side_by_side(out.iter().map(|r| r.side_by_side).collect());
    Ok(out)
}

/// Milliseconds, to the microsecond (all a timing of passes of milliseconds can say).
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The largest generator file `auto` times both engines for. Above it libtorch runs untimed: the
/// full 256 px generator (1.1 GB) made a server peak at 3.9 GB while `auto` exported, loaded and
/// timed ONNX Runtime (its session build alone holds about twice the weights) and libtorch in
/// turn, against 1.5 GB with libtorch alone: more than the 4 GiB instances it must fit. The light
/// generators (40 MB at 256 px) and every model of the tests are far below it.
#[cfg(feature = "torch")]
const AUTO_MAX_WEIGHTS: u64 = 512 << 20;

/// The fastest of [`TIMED_PASSES`] passes of `run`, after an untimed one (first passes pay for
/// lazy initialisation).
fn fastest(run: impl Fn() -> Result<(), EngineError>) -> Result<Duration, EngineError> {
    run()?;
    let mut best = Duration::MAX;
    for _ in 0..TIMED_PASSES {
        best = best.min(timed(&run)?);
    }
    Ok(best)
}

/// A pause before each timed pass: the other engine's worker threads may spin for a while after
/// its pass (OpenMP's and ONNX Runtime's do unless told to sleep) and take cores from this one.
const SETTLE: Duration = Duration::from_millis(20);

fn timed(f: impl FnOnce() -> Result<(), EngineError>) -> Result<Duration, EngineError> {
    std::thread::sleep(SETTLE);
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

/// One image of the model's size with every value of [-1, 1] represented: the timing does not
/// depend on the values, but a constant image could take shortcuts a photo does not.
fn probe(cfg: &ModelConfig) -> Result<Batch, EngineError> {
    let dims = [1, cfg.img_ch, cfg.img_size, cfg.img_size];
    Ok(Batch::from_fn(&dims, |i, n| {
        (-1.0 + i as f64 * 2.0 / (n.max(2) - 1) as f64) as f32
    })?)
}

/// The cores an ONNX Runtime session computes on: as many as libtorch's intra-op threads where
/// libtorch is built in, so either engine gets the same cores. Without libtorch, as libtorch would
/// take them: `OMP_NUM_THREADS` when set, else the CPUs this process may run on (logical CPUs:
/// where a core runs two threads this is twice libtorch's count of physical cores).
fn cores() -> usize {
    #[cfg(feature = "torch")]
    let n = usize::try_from(tch::get_num_threads()).ok();
    #[cfg(not(feature = "torch"))]
    let n = std::env::var("OMP_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from));
    n.unwrap_or(1).max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[cfg(feature = "torch")]
    #[test]
    fn specs_parse_print_and_refuse_what_onnx_runtime_cannot_run() {
        for s in [EngineSpec::Auto, EngineSpec::Torch, EngineSpec::Onnx] {
            assert_eq!(s.to_string().parse::<EngineSpec>(), Ok(s));
        }
        assert_eq!("ORT".parse::<EngineSpec>(), Ok(EngineSpec::Onnx));
        let err = "tensorrt".parse::<EngineSpec>().unwrap_err();
        assert!(err.contains("allowed: auto, torch, onnx"), "{err}");

        let onnx = EngineSpec::Onnx;
        assert!(onnx.check(Precision::Auto, DeviceSpec::Cpu).is_ok());
        assert!(onnx.check(Precision::F32, DeviceSpec::Auto).is_ok());
        let bf16 = onnx.check(Precision::Bf16, DeviceSpec::Cpu).unwrap_err();
        assert!(bf16.contains("float32 only"), "{bf16}");
        let gpu = onnx.check(Precision::F32, DeviceSpec::Cuda(0)).unwrap_err();
        assert!(gpu.contains("cuda:0"), "{gpu}");
        for other in [EngineSpec::Auto, EngineSpec::Torch] {
            assert!(other.check(Precision::Bf16, DeviceSpec::Cuda(0)).is_ok());
        }
        // `device = "auto"` passes the config; the device it resolved to is checked at load.
        let resolved = |engine, device| EngineOptions {
            engine,
            device,
            precision: Precision::Auto,
            onnx_arena: false,
            onnx_lanes: OnnxLanes::Off,
        };
        assert!(resolved(EngineSpec::Onnx, Device::Cpu).check().is_ok());
        assert!(resolved(EngineSpec::Auto, Device::Cuda(0)).check().is_ok());
        let err = resolved(EngineSpec::Onnx, Device::Cuda(0))
            .check()
            .unwrap_err();
        assert!(matches!(err, EngineError::Unsupported(_)), "{err}");
    }

    /// What a build without libtorch refuses, each by name (checked in every build: the rule is
    /// a plain function).
    #[test]
    fn a_build_without_libtorch_refuses_torch_bf16_and_gpus() {
        let ok = |spec, precision, device| only_onnx_runtime(spec, precision, device);
        for spec in [EngineSpec::Auto, EngineSpec::Onnx] {
            for precision in [Precision::Auto, Precision::F32] {
                for device in [DeviceSpec::Auto, DeviceSpec::Cpu] {
                    assert_eq!(ok(spec, precision, device), Ok(()));
                }
            }
        }
        let torch = ok(EngineSpec::Torch, Precision::F32, DeviceSpec::Cpu).unwrap_err();
        assert!(
            torch.contains("no libtorch") && torch.contains("cpu bundle"),
            "{torch}"
        );
        let bf16 = ok(EngineSpec::Auto, Precision::Bf16, DeviceSpec::Cpu).unwrap_err();
        assert!(
            bf16.starts_with("precision \"bf16\"") && bf16.contains("float32 only"),
            "{bf16}"
        );
        let gpu = ok(EngineSpec::Onnx, Precision::Auto, DeviceSpec::Cuda(1)).unwrap_err();
        assert!(
            gpu.starts_with("device \"cuda:1\"") && gpu.contains("CPU only"),
            "{gpu}"
        );
    }

    /// Without libtorch, `auto` is ONNX Runtime with nothing to time, and `torch` does not load.
    #[cfg(not(feature = "torch"))]
    #[test]
    fn without_libtorch_auto_runs_onnx_runtime() {
        let run = tempfile::tempdir().unwrap();
        let cfg = brs_testkit::model::tiny_config();
        brs_model::translator::write_random_export(run.path(), &cfg, 2, 1).unwrap();
        let opts = |engine| EngineOptions {
            engine,
            device: Device::Cpu,
            precision: Precision::Auto,
            onnx_arena: false,
            onnx_lanes: OnnxLanes::Off,
        };
        let e = Engine::open(run.path(), Direction::A2B, &opts(EngineSpec::Auto)).unwrap();
        assert_eq!((e.kind(), e.precision_name()), (EngineKind::Onnx, "f32"));
        assert!(e.timings().is_empty() && e.note().is_none());
        let out = e.translate_batch(&probe(&cfg).unwrap()).unwrap();
        assert_eq!(out.shape(), [1, 3, 96, 96]);
        assert!(out.values().iter().all(|v| (-1.0..=1.0).contains(v)));
        let err = Engine::open(run.path(), Direction::A2B, &opts(EngineSpec::Torch)).unwrap_err();
        assert!(matches!(err, EngineError::Unsupported(_)), "{err}");
    }

    #[test]
    fn the_probe_spans_the_input_range() {
        let cfg = brs_testkit::model::tiny_config();
        let x = probe(&cfg).unwrap();
        assert_eq!(x.shape(), [1, 3, 96, 96]);
        let v = x.values();
        assert_eq!((v[0], v[v.len() - 1]), (-1.0, 1.0));
        assert!(v.windows(2).all(|w| w[0] < w[1]), "every value once");
    }
}
