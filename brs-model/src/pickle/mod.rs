//! Reads PyTorch `torch.save` checkpoints (zip + pickle) into plain tensors, without Python.
//!
//! Two layouts are understood: the zip archive of PyTorch >= 1.6 (`<name>/data.pkl` plus one
//! `<name>/data/<key>` entry per storage, `archive`) and the older single-stream format
//! (`_use_new_zipfile_serialization=False`: magic, version and system-info pickles, the object
//! pickle, the list of storage keys, then the raw storages, `legacy`).
//!
//! The pickle is run by a tiny stack machine (`machine`) that knows only the opcodes
//! `torch.save` emits (protocols 2 to 5, `op`) and a fixed allow-list of globals
//! (`globals`). Nothing is ever imported or executed: a global outside the list stops the load,
//! because a `.pt` from the internet is untrusted input. Containers live in one flat arena
//! (`value`) and the stack holds indices into it, so a deeply nested pickle can neither
//! overflow the Rust stack nor build recursive drops. Every length, index and shape read from
//! the file is checked, and the bytes this reader allocates for tensors and decompressed entries
//! are capped relative to the file size (`budget`). Which tensors are returned is decided
//! before any storage is read (`plan`); each is then copied out of its storage
//! (`materialize`).

mod archive;
mod budget;
mod calls;
mod globals;
mod input;
mod legacy;
mod machine;
mod materialize;
mod op;
mod plan;
mod tensor;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

pub(crate) use tensor::f16_to_f32;
pub use tensor::{DType, RawTensor};

/// Tensor name -> tensor, as in a module's `state_dict()`.
pub type StateDict = BTreeMap<String, RawTensor>;

#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    #[error("cannot read the checkpoint: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid zip archive: {0}")]
    Zip(String),
    /// Valid PyTorch content this reader deliberately does not handle (including any pickle
    /// global outside the allow-list).
    #[error("{0}")]
    Unsupported(String),
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// The file asks for more memory than its size can justify.
    #[error("checkpoint too large: {0}")]
    TooLarge(String),
}

type Result<T> = std::result::Result<T, PickleError>;

fn malformed(msg: impl Into<String>) -> PickleError {
    PickleError::Malformed(msg.into())
}

/// What a checkpoint held. The top-level object must be a dict; each of its values that is a
/// dict of tensors becomes a [`StateDict`], every other value is skipped and its key listed.
/// A top level that is itself one state_dict comes back as `dicts[""]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PtFile {
    pub dicts: BTreeMap<String, StateDict>,
    pub skipped: Vec<String>,
}

/// Reads a `torch.save` file from disk.
pub fn read_pt(path: &Path) -> Result<PtFile> {
    let bytes = std::fs::read(path).map_err(|e| {
        PickleError::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ))
    })?;
    read_pt_bytes(&bytes)
}

/// Reads a `torch.save` file already in memory.
pub fn read_pt_bytes(bytes: &[u8]) -> Result<PtFile> {
    let mut budget = budget::Budget::for_input(bytes.len());
    match bytes {
        [] => Err(malformed("the file is empty")),
        [b'P', b'K', ..] => archive::read(bytes, &mut budget),
        [0x80, ..] => legacy::read(bytes, &mut budget),
        _ => Err(malformed(
            "not a PyTorch checkpoint: neither a zip archive nor a pickle stream \
             (the tar format of PyTorch < 0.4 is not supported)",
        )),
    }
}
