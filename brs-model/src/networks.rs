//! The six networks of U-GAT-IT by their official names, each in its own variable store.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::Device;
use tch::nn::VarStore;

use crate::config::{GLOBAL_D_LAYERS, LOCAL_D_LAYERS, ModelConfig};
use crate::discriminator::Discriminator;
use crate::error::{ModelError, Result};
use crate::generator::Generator;

/// A translation direction; A is the photo domain, B the animation domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    A2B,
    B2A,
}

impl Direction {
    /// The official name of the generator of this direction.
    pub fn generator(self) -> NetworkKind {
        match self {
            Direction::A2B => NetworkKind::GenA2B,
            Direction::B2A => NetworkKind::GenB2A,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::A2B => "a2b",
            Direction::B2A => "b2a",
        })
    }
}

impl FromStr for Direction {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "a2b" => Ok(Direction::A2B),
            "b2a" => Ok(Direction::B2A),
            _ => Err(ModelError::Config(format!(
                "direction {s:?} (allowed: a2b, b2a)"
            ))),
        }
    }
}

/// One of the six networks, named as in the official checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NetworkKind {
    GenA2B,
    GenB2A,
    DisGA,
    DisGB,
    DisLA,
    DisLB,
}

impl NetworkKind {
    pub const ALL: [NetworkKind; 6] = [
        NetworkKind::GenA2B,
        NetworkKind::GenB2A,
        NetworkKind::DisGA,
        NetworkKind::DisGB,
        NetworkKind::DisLA,
        NetworkKind::DisLB,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NetworkKind::GenA2B => "genA2B",
            NetworkKind::GenB2A => "genB2A",
            NetworkKind::DisGA => "disGA",
            NetworkKind::DisGB => "disGB",
            NetworkKind::DisLA => "disLA",
            NetworkKind::DisLB => "disLB",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn is_generator(self) -> bool {
        matches!(self, NetworkKind::GenA2B | NetworkKind::GenB2A)
    }

    /// File holding this network's weights in a checkpoint directory.
    pub fn file_name(self) -> String {
        format!("{}.safetensors", self.name())
    }
}

/// All six networks, ready to train or to load a checkpoint into.
#[derive(Debug)]
pub struct Networks {
    pub config: ModelConfig,
    pub gen_a2b: Generator,
    pub gen_b2a: Generator,
    pub dis_ga: Discriminator,
    pub dis_gb: Discriminator,
    pub dis_la: Discriminator,
    pub dis_lb: Discriminator,
    stores: BTreeMap<NetworkKind, VarStore>,
}

impl Networks {
    /// Builds the six networks with PyTorch's default initialisation (seed with
    /// `tch::manual_seed` first for a reproducible start).
    pub fn new(config: &ModelConfig, device: Device) -> Result<Self> {
        config.validate()?;
        let stores: BTreeMap<NetworkKind, VarStore> = NetworkKind::ALL
            .into_iter()
            .map(|k| (k, VarStore::new(device)))
            .collect();
        let root = |k: NetworkKind| stores[&k].root();
        let generator = |k| Generator::new(&root(k), config);
        let discriminator = |k, layers| Discriminator::new(&root(k), config, layers);
        Ok(Networks {
            gen_a2b: generator(NetworkKind::GenA2B),
            gen_b2a: generator(NetworkKind::GenB2A),
            dis_ga: discriminator(NetworkKind::DisGA, GLOBAL_D_LAYERS),
            dis_gb: discriminator(NetworkKind::DisGB, GLOBAL_D_LAYERS),
            dis_la: discriminator(NetworkKind::DisLA, LOCAL_D_LAYERS),
            dis_lb: discriminator(NetworkKind::DisLB, LOCAL_D_LAYERS),
            config: config.clone(),
            stores,
        })
    }

    pub fn store(&self, kind: NetworkKind) -> &VarStore {
        // Every kind is inserted in `new`.
        &self.stores[&kind]
    }

    pub fn stores(&self) -> impl Iterator<Item = (NetworkKind, &VarStore)> {
        self.stores.iter().map(|(k, vs)| (*k, vs))
    }
}

/// Trainable parameters in a store (spectral norm's u and v are buffers, not parameters).
pub fn parameter_count(vs: &VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

/// Parameter counts of a generator, a global and a local discriminator for `config`,
/// built on the meta device-free CPU path without keeping the weights.
pub fn parameter_counts(config: &ModelConfig) -> Result<BTreeMap<&'static str, i64>> {
    config.validate()?;
    let count = |build: &dyn Fn(&tch::nn::Path)| {
        let vs = VarStore::new(Device::Cpu);
        build(&vs.root());
        parameter_count(&vs)
    };
    let generator = count(&|p| {
        Generator::new(p, config);
    });
    let global = count(&|p| {
        Discriminator::new(p, config, GLOBAL_D_LAYERS);
    });
    let local = count(&|p| {
        Discriminator::new(p, config, LOCAL_D_LAYERS);
    });
    Ok(BTreeMap::from([
        ("generator", generator),
        ("global discriminator", global),
        ("local discriminator", local),
        ("all six networks", 2 * (generator + global + local)),
    ]))
}

impl Networks {
    /// Writes each network as `<name>.safetensors` into a checkpoint being built.
    pub fn add_to(&self, writer: &mut crate::checkpoint::CheckpointWriter) -> Result<()> {
        for (kind, vs) in self.stores() {
            writer.add_tensors(
                &kind.file_name(),
                &crate::tensors::named_variables(vs),
                None,
            )?;
        }
        Ok(())
    }

    /// Loads all six networks from a training checkpoint, verifying hashes, names and shapes.
    pub fn load_from(&self, ckpt: &crate::checkpoint::Checkpoint) -> Result<()> {
        if ckpt.meta.model != self.config {
            return Err(ModelError::Shape(format!(
                "{} was trained with {:?}, these networks are {:?}",
                ckpt.dir.display(),
                ckpt.meta.model,
                self.config
            )));
        }
        for (kind, vs) in self.stores() {
            let tensors = ckpt.read_tensors(&kind.file_name())?;
            crate::tensors::load_into(vs, &tensors).map_err(|e| ModelError::Corrupt {
                path: ckpt.dir.join(kind.file_name()),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn direction_parses_and_names_its_generator() {
        assert_eq!("A2B".parse::<Direction>().unwrap(), Direction::A2B);
        assert!("sideways".parse::<Direction>().is_err());
        assert_eq!(Direction::B2A.generator().name(), "genB2A");
        assert_eq!(NetworkKind::from_name("disLA"), Some(NetworkKind::DisLA));
    }
}
