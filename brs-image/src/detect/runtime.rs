//! Finding and loading the ONNX Runtime shared library, and building sessions.
//!
//! `ort` is built with `load-dynamic`: the library is opened at run time. If ort is used before a
//! library was loaded it panics, so every session goes through [`build_session`], which first makes sure
//! [`init_onnxruntime`] succeeded, and that function checks the file exists before handing it to ort.
//! Search order: explicit path, env `ORT_DYLIB_PATH`, the path scripts/setup recorded at build time
//! (env `BRS_ORT_DYLIB` from .cargo/config.toml, baked in by build.rs).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use super::{DetectError, model_error};

static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
static LOADED: Mutex<Option<PathBuf>> = Mutex::new(None);

const FIX: &str = "run scripts/setup (it installs onnxruntime 1.31.1 from PyPI and records the library path), \
or pass --onnxruntime /path/to/libonnxruntime.so, or set ORT_DYLIB_PATH";

/// Where the library would be loaded from, and which source named it: an explicit path, env
/// `ORT_DYLIB_PATH`, the release bundle's `lib/` beside the binary's `bin/`, or the path
/// scripts/setup recorded at build time.
pub fn onnxruntime_path(explicit: Option<&Path>) -> Option<(PathBuf, &'static str)> {
    if let Some(p) = explicit {
        return Some((p.to_path_buf(), "the explicit path"));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), "ORT_DYLIB_PATH"));
    }
    if let Some(p) = super::bundled("lib", |name| name.starts_with("libonnxruntime.so")) {
        return Some((p, "the bundle's lib/"));
    }
    option_env!("BRS_ORT_DYLIB_BUILD")
        .filter(|p| !p.is_empty())
        .map(|p| {
            (
                PathBuf::from(p),
                "the path scripts/setup recorded at build time",
            )
        })
}

/// Loads ONNX Runtime once per process. Later calls succeed without reloading (ort cannot swap
/// libraries in a running process); an explicit path differing from the loaded one is an error.
pub fn init_onnxruntime(path: Option<&Path>) -> Result<(), DetectError> {
    let mut loaded = LOADED
        .lock()
        .map_err(|_| DetectError::Runtime("ONNX Runtime loader lock poisoned".into()))?;
    if let Some(current) = loaded.as_ref() {
        return match path {
            Some(p) if p != current => Err(DetectError::Runtime(format!(
                "ONNX Runtime is already loaded from {}; cannot switch to {} in the same process",
                current.display(),
                p.display()
            ))),
            _ => Ok(()),
        };
    }
    let (lib, source) = onnxruntime_path(path)
        .ok_or_else(|| DetectError::Runtime(format!("ONNX Runtime library not found: {FIX}")))?;
    if !lib.is_file() {
        return Err(DetectError::Runtime(format!(
            "ONNX Runtime library {} (from {source}) does not exist: {FIX}",
            lib.display()
        )));
    }
    let builder = ort::init_from(&lib).map_err(|e| {
        DetectError::Runtime(format!(
            "could not load ONNX Runtime from {} (from {source}): {e}; {FIX}",
            lib.display()
        ))
    })?;
    let env = builder
        .with_name("brs-dataset")
        .build()
        .map_err(|e| DetectError::Runtime(format!("ONNX Runtime environment: {e}")))?;
    let _ = ENV.set(env);
    *loaded = Some(lib);
    Ok(())
}

/// How a session runs: its graph optimisations, its intra-op threads, and whether they spin
/// between operators (ONNX Runtime's default) or sleep, as libtorch's OpenMP threads do in a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    pub optimization: GraphOptimizationLevel,
    pub intra_threads: usize,
    pub spin: bool,
    /// Whether activations come from ONNX Runtime's CPU arena (its default: kept at its peak
    /// for the session's life) or from malloc (given back as the process's allocator does).
    pub arena: bool,
}

/// A CPU session for `model` with `threads` intra-op threads.
pub(crate) fn session(model: &Path, threads: usize) -> Result<Session, DetectError> {
    build_session(
        model,
        SessionOptions {
            optimization: GraphOptimizationLevel::Level3,
            intra_threads: threads,
            spin: true,
            arena: true,
        },
    )
}

/// A CPU session for `model` with one inter-op thread, ONNX Runtime loaded first (once per
/// process).
pub fn build_session(model: &Path, options: SessionOptions) -> Result<Session, DetectError> {
    init_onnxruntime(None)?;
    let env = ENV
        .get()
        .ok_or_else(|| DetectError::Runtime("ONNX Runtime environment missing".into()))?;
    if !model.is_file() {
        return Err(model_error(model, "no such file"));
    }
    let builder = Session::builder(env).map_err(|e| model_error(model, e))?;
    builder
        .with_optimization_level(options.optimization)
        .map_err(|e| model_error(model, e))?
        .with_intra_threads(options.intra_threads.max(1))
        .map_err(|e| model_error(model, e))?
        .with_inter_threads(1)
        .map_err(|e| model_error(model, e))?
        .with_intra_op_spinning(options.spin)
        .map_err(|e| model_error(model, e))?
        .with_execution_providers([ort::ep::CPU::default()
            .with_arena_allocator(options.arena)
            .build()])
        .map_err(|e| model_error(model, e))?
        .commit_from_file(model)
        .map_err(|e| model_error(model, e))
}
