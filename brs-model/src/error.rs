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
    #[cfg(feature = "torch")]
    #[error("torch: {0}")]
    Torch(tch::TchError),
    #[error("image: {0}")]
    Image(String),
    #[cfg(feature = "import")]
    #[error("PyTorch checkpoint: {0}")]
    Import(ImportError),
    #[cfg(feature = "import")]
    // Boxed: its largest variants would double the size of every ModelError (and of the
    // serving side's errors that carry one), though only an import ever makes one.
    #[error("TensorFlow checkpoint: {0}")]
    TfBundle(Box<TfBundleError>),
    #[cfg(feature = "import")]
    #[error("TensorFlow checkpoint: {0}")]
    TfImport(Box<TfImportError>),
    /// An ONNX export failed for a reason other than reading or writing files. Boxed, as
    /// `TfBundle`: its shape variant would grow every ModelError (and the servers' errors that
    /// carry one) past clippy's large-error limit.
    #[error("{path}: cannot export as ONNX: {cause}")]
    Onnx {
        path: PathBuf,
        cause: Box<OnnxError>,
    },
}

/// Why a generator's weights cannot be written as an ONNX model (`crate::onnx`).
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("no weight {0}, which the generator of this checkpoint's model config needs")]
    MissingWeight(String),
    #[error("weight {name} has shape {found:?}, the generator needs {expected:?}")]
    WeightShape {
        name: String,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
    /// Weights the model config's network does not have: another flavour's or shape's.
    #[error(
        "{} weights that the generator of this checkpoint's model config does not use (a \
         checkpoint of another flavour or shape?): {}",
        .0.len(), list(.0)
    )]
    UnusedWeights(Vec<String>),
    #[error("the output's file name is not valid UTF-8 (an external data file is named after it)")]
    FileName,
}

/// Why a TensorFlow checkpoint that reads fine is not a U-GAT-IT model brs can build.
#[cfg(feature = "import")]
#[derive(Debug, thiserror::Error)]
pub enum TfImportError {
    #[error(
        "{prefix} is not a checkpoint of the official TensorFlow U-GAT-IT (taki0112/UGATIT): \
         it has no {expected}; its first variables are: {found}"
    )]
    NotUgatit {
        prefix: PathBuf,
        expected: &'static str,
        found: String,
    },
    /// Names the mapping does not know, and variables of our network nothing mapped to.
    #[error(
        "{prefix}: cannot map every variable ({} unknown, {} missing); nothing was written.\n  \
         unknown: {}\n  missing: {}",
        unknown.len(), missing.len(), list(unknown), list(missing)
    )]
    Unmapped {
        prefix: PathBuf,
        unknown: Vec<String>,
        missing: Vec<String>,
    },
    #[error("{name} has shape {shape:?}, expected {expected:?} ({why})")]
    Shape {
        name: String,
        shape: Vec<usize>,
        expected: Vec<i64>,
        why: String,
    },
    /// The checkpoint's name (`UGATIT_light.model-N`) or the caller says light, the shapes
    /// say otherwise, or the other way round.
    #[error(
        "{prefix}: {said} a {} model, but its weights are a {} model (the first MLP layer has \
         {inputs} inputs); the authors' selfie2anime release is the full model",
        light_word(*said_light), light_word(!*said_light)
    )]
    LightMismatch {
        prefix: PathBuf,
        said: String,
        said_light: bool,
        inputs: i64,
    },
    #[error("{prefix}: {reason}")]
    Unsupported { prefix: PathBuf, reason: String },
}

#[cfg(feature = "import")]
fn light_word(light: bool) -> &'static str {
    if light { "light" } else { "full" }
}

/// At most 12 names, then how many more: an error message stays readable.
fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let mut out = names
        .iter()
        .take(12)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 12 {
        out.push_str(&format!(" and {} more", names.len() - 12));
    }
    out
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

/// Why a TensorFlow checkpoint (a tensor bundle: `PREFIX.index` plus `PREFIX.data-*-of-*`)
/// or a directory of them cannot be read. Paths name the file at fault.
#[cfg(feature = "import")]
#[derive(Debug, thiserror::Error)]
pub enum TfBundleError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The file is something else (a PyTorch zip, a directory, ...); `reason` says what.
    #[error("{path}: this is not a TensorFlow bundle index: {reason}")]
    NotABundle { path: PathBuf, reason: String },
    #[error(
        "{path}: no bundle index {index} (a TensorFlow checkpoint PREFIX is read from \
         PREFIX.index and PREFIX.data-*-of-*)"
    )]
    MissingIndex { path: PathBuf, index: PathBuf },
    #[error("{path}: truncated bundle index: {detail}")]
    TruncatedIndex { path: PathBuf, detail: String },
    #[error(
        "{path}: bad magic number {found:#018x} at the end: this is not a TensorFlow bundle \
         index, or it was truncated"
    )]
    BadMagic { path: PathBuf, found: u64 },
    #[error(
        "{path}: {block} block at offset {offset}: checksum mismatch (stored {stored:#010x}, \
         computed {computed:#010x}): the index is corrupt"
    )]
    BlockChecksum {
        path: PathBuf,
        block: &'static str,
        offset: u64,
        stored: u32,
        computed: u32,
    },
    #[error(
        "{path}: {block} block at offset {offset} is compressed ({kind}); TensorFlow writes \
         bundle indexes uncompressed and this reader does not decompress"
    )]
    CompressedBlock {
        path: PathBuf,
        block: &'static str,
        offset: u64,
        kind: String,
    },
    #[error("{path}: corrupt bundle index: {reason}")]
    CorruptIndex { path: PathBuf, reason: String },
    #[error("{path}: the index holds more than this reader allows for its size: {reason}")]
    TooLarge { path: PathBuf, reason: String },
    #[error(
        "{path}: the bundle was written on a big-endian machine; only little-endian bundles \
         can be read"
    )]
    BigEndian { path: PathBuf },
    #[error("{path}: unsupported bundle format version: {detail}")]
    Version { path: PathBuf, detail: String },
    #[error("{path}: tensor {tensor:?} has an invalid shape: {reason}")]
    Shape {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    #[error(
        "{path}: tensor {tensor:?} ({dtype} of shape {shape:?}) needs {expected} bytes but its \
         entry says {size}"
    )]
    ShapeSize {
        path: PathBuf,
        tensor: String,
        dtype: String,
        shape: Vec<usize>,
        expected: u64,
        size: u64,
    },
    #[error("{path}: missing data shard {shard} of {num_shards}, needed by tensor {tensor:?}")]
    MissingShard {
        path: PathBuf,
        shard: u32,
        num_shards: u32,
        tensor: String,
    },
    #[error(
        "{path}: truncated data shard: tensor {tensor:?} needs bytes {offset}..{end} but the \
         file has {len}"
    )]
    TruncatedShard {
        path: PathBuf,
        tensor: String,
        offset: u64,
        end: u64,
        len: u64,
    },
    #[error(
        "{path}: tensor {tensor:?}: checksum mismatch (stored {stored:#010x}, computed \
         {computed:#010x}): the data shard is corrupt"
    )]
    TensorChecksum {
        path: PathBuf,
        tensor: String,
        stored: u32,
        computed: u32,
    },
    #[error("{prefix}: tensor {tensor:?} is {dtype}; {wanted}")]
    UnsupportedDtype {
        prefix: PathBuf,
        tensor: String,
        dtype: String,
        wanted: &'static str,
    },
    #[error(
        "{prefix}: tensor {tensor:?} is saved in {slices} slices (a partitioned variable); \
         sliced tensors are not supported"
    )]
    Sliced {
        prefix: PathBuf,
        tensor: String,
        slices: usize,
    },
    #[error("{prefix}: no tensor {tensor:?} in this checkpoint (it holds {count} tensors)")]
    NoSuchTensor {
        prefix: PathBuf,
        tensor: String,
        count: usize,
    },
    #[error("{path}: invalid checkpoint state file: {reason}")]
    CheckpointState { path: PathBuf, reason: String },
    #[error("{dir}: no checkpoint file naming the latest checkpoint (prefixes present: {found})")]
    NoCheckpointFile { dir: PathBuf, found: String },
    #[error("{dir}: no checkpoint of step {step} (steps present: {found})")]
    NoSuchStep {
        dir: PathBuf,
        step: u64,
        found: String,
    },
    #[error("{dir}: several checkpoints of step {step}: {found}")]
    AmbiguousStep {
        dir: PathBuf,
        step: u64,
        found: String,
    },
}

// Not `#[from]`, which would also make the cause the `source()` (see the module doc).
#[cfg(feature = "torch")]
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

#[cfg(feature = "import")]
impl From<TfImportError> for ModelError {
    fn from(e: TfImportError) -> Self {
        ModelError::TfImport(Box::new(e))
    }
}

#[cfg(feature = "import")]
impl From<TfBundleError> for ModelError {
    fn from(e: TfBundleError) -> Self {
        ModelError::TfBundle(Box::new(e))
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
