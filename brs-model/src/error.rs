//! The error type of brs-model: every failure a caller can act on, none of them a panic.
//!
//! A cause is part of its variant's message, so it is never also a `source()`: anyhow's `{:#}`
//! at the binary edge would print it twice.

use std::path::PathBuf;

/// Errors from building networks, reading or writing checkpoints, and running inference.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("invalid direction {0:?} (allowed: a2b, b2a)")]
    Direction(String),
    #[error("invalid device {0:?}: expected auto, cpu, cuda or cuda:N")]
    Device(String),
    #[error("device {0} requested but CUDA is not available (this libtorch sees {1} GPUs)")]
    NoCuda(String, usize),
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "invalid checkpoint name {0:?}: use ASCII letters, digits, '-', '_' and '.' (not leading)"
    )]
    CheckpointName(String),
    #[error(
        "invalid checkpoint file name {0:?}: use ASCII letters, digits, '-', '_' and '.' (not \
         leading), and neither meta.json nor meta.json.sha256"
    )]
    FileName(String),
    #[error("checkpoint file {0:?} added twice")]
    DuplicateFile(String),
    #[error("cannot serialise checkpoint metadata: {0}")]
    Metadata(serde_json::Error),
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
    #[error("{path}: file {file} is not in this checkpoint (it holds {available})")]
    MissingFile {
        path: PathBuf,
        file: String,
        available: String,
    },
    #[error("weights do not fit the network: {0}")]
    Shape(String),
    #[error(
        "input of shape {found:?} does not fit this model: expected [N, {channels}, {side}, {side}]"
    )]
    InputShape {
        found: Vec<i64>,
        channels: i64,
        side: i64,
    },
    #[error("unsupported tensor type {0}")]
    TensorType(String),
    #[error("safetensors: {0}")]
    Safetensors(safetensors::SafeTensorError),
    #[error("torch: {0}")]
    Torch(tch::TchError),
    #[error("image: {0}")]
    Image(String),
    #[cfg(feature = "import")]
    #[error("PyTorch checkpoint: {0}")]
    Import(ImportError),
}

/// Why an official UGATIT-pytorch checkpoint cannot be imported.
#[cfg(feature = "import")]
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not a `torch.save` checkpoint this reader accepts.
    #[error("{path}: {cause}")]
    Read {
        path: PathBuf,
        cause: crate::pickle::PickleError,
    },
    #[error(
        "{path} has no {network}: expected a dict of genA2B, genB2A, disGA, disGB, disLA, disLB \
         (found: {found})"
    )]
    MissingNetwork {
        path: PathBuf,
        network: &'static str,
        found: String,
    },
    #[error("{network} has no {key}: not a U-GAT-IT checkpoint")]
    MissingKey {
        network: &'static str,
        key: &'static str,
    },
    #[error("{key} has shape {shape:?}, expected {expected}")]
    KeyShape {
        key: &'static str,
        shape: Vec<usize>,
        expected: &'static str,
    },
    #[error(
        "FC.0.weight has {inputs} inputs, which is neither {deep} (light) nor a square map of \
         {deep} channels (full)"
    )]
    MlpInputs { inputs: i64, deep: i64 },
    #[error("{network}: unexpected key {key}")]
    UnexpectedKey { network: &'static str, key: String },
    #[error("{key}: {cause}")]
    Tensor { key: String, cause: tch::TchError },
    /// The renamed weights do not load into our network of the inferred shape.
    #[error("{network}: {cause}")]
    Weights {
        network: &'static str,
        cause: Box<ModelError>,
    },
}

// Not `#[from]`, which would also make the cause the `source()` (see the module doc).
impl From<tch::TchError> for ModelError {
    fn from(e: tch::TchError) -> Self {
        ModelError::Torch(e)
    }
}

#[cfg(feature = "import")]
impl From<ImportError> for ModelError {
    fn from(e: ImportError) -> Self {
        ModelError::Import(e)
    }
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
