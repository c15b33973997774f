//! The six networks of U-GAT-IT by their official names, each in its own variable store.

use std::collections::BTreeMap;

use tch::Device;
use tch::nn::VarStore;

use crate::config::ModelConfig;
use crate::discriminator::Discriminator;
use crate::error::{ModelError, Result};
use crate::generator::Generator;
pub use crate::names::{Direction, NetworkKind};

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
            dis_ga: discriminator(NetworkKind::DisGA, config.global_d_layers()),
            dis_gb: discriminator(NetworkKind::DisGB, config.global_d_layers()),
            dis_la: discriminator(NetworkKind::DisLA, config.local_d_layers()),
            dis_lb: discriminator(NetworkKind::DisLB, config.local_d_layers()),
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
        Discriminator::new(p, config, config.global_d_layers());
    });
    let local = count(&|p| {
        Discriminator::new(p, config, config.local_d_layers());
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
            ckpt.load_into(&kind.file_name(), vs)?;
        }
        Ok(())
    }
}
