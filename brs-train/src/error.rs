//! The error type of brs-train's library: every failure a user can act on, none of them a panic.

use std::path::PathBuf;

/// Errors from configuring, loading data, training, sampling and checkpointing.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid config: {0}")]
    Config(String),
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
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
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
    #[error("{0}")]
    Image(String),
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
