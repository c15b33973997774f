//! brs-model: the U-GAT-IT networks (Kim et al., ICLR 2020, <https://arxiv.org/abs/1907.10830>)
//! and the checkpoint format that brs-train writes and brs-serve reads.
//!
//! No CLI, no HTTP, no training loop: those live in the crates that use this one.
//!
//! [`onnx`] writes a generator as an ONNX model, for runtimes other than brs's own.
//!
//! Feature `torch` adds the networks on libtorch (training, libtorch inference, writing
//! checkpoints from tensors). Without it the crate still reads checkpoints ([`checkpoint`],
//! [`floats`]) and exports generators to ONNX: all the ONNX Runtime serving bundle needs.
//!
//! Feature `import` adds [`pickle`], a reader of PyTorch `.pt` files, and [`import`], which turns
//! official UGATIT-pytorch checkpoints into ours, and [`tfbundle`], a reader of TensorFlow
//! checkpoints. Only brs-train enables it, for its `import-pytorch` command; the servers never
//! parse a pickle or a bundle and do not compile the readers.

pub mod alloc;
pub mod checkpoint;
pub mod config;
pub mod device;
#[cfg(feature = "torch")]
pub mod discriminator;
pub mod error;
pub mod floats;
#[cfg(feature = "torch")]
pub mod generator;
#[cfg(feature = "torch")]
pub mod image;
#[cfg(feature = "import")]
pub mod import;
#[cfg(feature = "import")]
pub mod import_tf;
#[cfg(feature = "torch")]
mod layers;
pub mod names;
#[cfg(feature = "torch")]
pub mod networks;
#[cfg(feature = "torch")]
mod norm;
pub mod onnx;
#[cfg(feature = "import")]
pub mod pickle;
pub mod precision;
#[cfg(feature = "torch")]
pub(crate) mod spectral;
#[cfg(feature = "torch")]
pub mod tensors;
#[cfg(feature = "import")]
pub mod tfbundle;
#[cfg(feature = "torch")]
pub mod translator;

pub use config::ModelConfig;
pub use device::DeviceSpec;
#[cfg(feature = "torch")]
pub use discriminator::{Discriminator, DiscriminatorOutput};
pub use error::{ModelError, OnnxError, Result};
#[cfg(feature = "torch")]
pub use generator::{Generator, GeneratorOutput};
pub use names::{Direction, NetworkKind};
#[cfg(feature = "torch")]
pub use networks::Networks;
pub use precision::Precision;
#[cfg(feature = "torch")]
pub use translator::Translator;
