//! The error type of brs-model: every failure a caller can act on, none of them a panic.

use std::path::PathBuf;

/// Errors from building networks, reading or writing checkpoints, and running inference.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("invalid device {0:?}: expected auto, cpu, cuda or cuda:N")]
    Device(String),
    #[error("device {0} requested but CUDA is not available (this libtorch sees {1} GPUs)")]
    NoCuda(String, usize),
    // The cause is part of the message, so it is not also a `source()`: anyhow's `{:#}` at the
    // binary edge would print it twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: not a checkpoint: {reason}")]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error("{path}: checkpoint is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: hash mismatch for {file}: expected {expected}, found {found}")]
    HashMismatch {
        path: PathBuf,
        file: String,
        expected: String,
        found: String,
    },
    #[error("{path}: network {network} is not in this checkpoint (it holds {available})")]
    MissingNetwork {
        path: PathBuf,
        network: String,
        available: String,
    },
    #[error("weights do not fit the network: {0}")]
    Shape(String),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("image: {0}")]
    Image(String),
    #[cfg(feature = "import")]
    #[error("PyTorch checkpoint: {0}")]
    Import(String),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            cause,
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
