//! brs-model: the U-GAT-IT networks (Kim et al., ICLR 2020, <https://arxiv.org/abs/1907.10830>)
//! and the checkpoint format that brs-train writes and brs-serve reads.
//!
//! No CLI, no HTTP, no training loop: those live in the crates that use this one.

pub mod alloc;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod discriminator;
pub mod error;
pub mod generator;
pub mod image;
pub mod import;
mod layers;
pub mod networks;
mod norm;
pub mod pickle;
pub mod precision;
mod spectral;
pub mod tensors;
pub mod translator;

pub use config::ModelConfig;
pub use device::{DeviceSpec, parse_device};
pub use discriminator::{Discriminator, DiscriminatorOutput};
pub use error::{ModelError, Result};
pub use generator::{Generator, GeneratorOutput};
pub use networks::{Direction, NetworkKind, Networks};
pub use precision::Precision;
pub use translator::Translator;
