//! The error type of brs-train's library: every failure a user can act on, none of them a panic.

use std::path::PathBuf;

/// Errors from configuring, loading data, training, sampling and checkpointing.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A config key out of range, a missing dataset or run directory: the config or the command
    /// line has to change.
    #[error("invalid config: {0}")]
    Config(String),
    #[error(
        "{out} already holds a run (latest: {latest}); pass --resume to continue it or choose \
         another --out"
    )]
    RunExists { out: PathBuf, latest: String },
    #[error("{path}: {reason}")]
    Data { path: PathBuf, reason: String },
    // The cause is part of the message, so it is not also a `source()`: anyhow's `{:#}` at the
    // binary edge would print it twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] brs_model::ModelError),
    /// The engine running a generator (`translate`, `evaluate`): ONNX Runtime missing or failing.
    #[error(transparent)]
    Engine(#[from] brs_engine::EngineError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(
        "losses became non-finite at iteration {iteration} (d_loss {d_loss}, g_loss {g_loss}); \
         lower lr or resume from the last checkpoint"
    )]
    NonFiniteLoss {
        iteration: u64,
        d_loss: f64,
        g_loss: f64,
    },
    /// A checkpoint's optimizer state that does not fit the networks (missing or misshapen).
    #[error("optimizer state: {0}")]
    OptimizerState(String),
    /// A checkpoint's data stream position that does not fit the dataset.
    #[error("data stream state: {0}")]
    LoaderState(String),
    #[error("cannot serialise {what}: {cause}")]
    Serialise {
        what: &'static str,
        cause: serde_json::Error,
    },
    #[error(
        "saving the checkpoint at iteration {iteration} failed ({cause}); the previous checkpoint \
         and `latest` are untouched"
    )]
    Save {
        iteration: u64,
        cause: Box<TrainError>,
    },
    #[error("cannot resume from {path}: {reason}")]
    Resume { path: PathBuf, reason: String },
    #[error("encoding {path} as PNG: {cause}")]
    Png {
        path: PathBuf,
        cause: image::ImageError,
    },
    #[error("drawing the loss plot: {0}")]
    Plot(String),
    /// A replica's worker thread failed (its panic message) or disagreed with the networks here.
    #[error("replica {index}: {reason}")]
    Replica { index: usize, reason: String },
    #[error("batch = {0} (allowed: 1..=1024)")]
    Batch(usize),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            cause,
        }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
