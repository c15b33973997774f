//! Inference with one generator loaded from a checkpoint or export: what servers and the
//! offline `translate` command use. Also writes exports (one generator, optionally half precision).

use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{
    Checkpoint, CheckpointKind, CheckpointMeta, CheckpointWriter, checkpoint_name,
};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::generator::{Generator, GeneratorOutput};
use crate::names::Direction;
use crate::precision::{Precision, channels_last, store_channels_last};
use crate::tensors;

/// A generator ready for inference, with the metadata of the checkpoint it came from.
#[derive(Debug)]
pub struct Translator {
    generator: Generator,
    vs: VarStore,
    checkpoint: Checkpoint,
    direction: Direction,
    device: Device,
    kind: Kind,
}

impl Translator {
    /// Loads the generator of `direction` from a run, checkpoint or export directory. Hashes,
    /// names and shapes are all verified; nothing is half-loaded on error. It runs in float32
    /// until `with_precision` says otherwise.
    pub fn load(path: &Path, direction: Direction, device: Device) -> Result<Self> {
        Self::from_checkpoint(Checkpoint::open(path)?, direction, device)
    }

    pub fn from_checkpoint(
        checkpoint: Checkpoint,
        direction: Direction,
        device: Device,
    ) -> Result<Self> {
        if let (CheckpointKind::Export, Some(d)) = (checkpoint.meta.kind, checkpoint.meta.direction)
            && d != direction
        {
            return Err(ModelError::MissingNetwork {
                path: checkpoint.dir.clone(),
                network: direction.generator().name().into(),
                available: format!("an export of {}", d.generator().name()),
            });
        }
        let file = direction.generator().file_name();
        let vs = VarStore::new(device);
        let generator = Generator::new(&vs.root(), &checkpoint.meta.model);
        // Streamed into the variables: a full generator's 1.1 GiB is held once, not three times.
        checkpoint.load_into(&file, &vs)?;
        // oneDNN's CPU convolutions run 10-12% faster on channels-last maps (same values). A later
        // change of kind keeps the layout (casts preserve strides).
        if device == Device::Cpu {
            store_channels_last(&vs);
        }
        Ok(Translator {
            generator,
            vs,
            checkpoint,
            direction,
            device,
            kind: Kind::Float,
        })
    }

    /// Converts the weights once to the number format `precision` resolves to on this device.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        let kind = precision.kind(self.device);
        if kind != self.kind {
            match kind {
                Kind::BFloat16 => self.vs.bfloat16(),
                _ => self.vs.float(),
            }
            self.kind = kind;
        }
        self
    }

    /// The tensor kind inference runs in (`Float` or `BFloat16`).
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Runs the generator on a batch [N, C, S, S] in [-1, 1] without autograd; outputs are
    /// float32 whatever the precision.
    pub fn forward(&self, input: &Tensor) -> Result<GeneratorOutput> {
        self.checkpoint.meta.model.check_input(&input.size())?;
        let _guard = tch::no_grad_guard();
        let mut x = input.to_device(self.device).to_kind(self.kind);
        if self.device == Device::Cpu {
            x = channels_last(&x);
        }
        let out = self.generator.forward(&x);
        let float = |t: Tensor| t.to_kind(Kind::Float).contiguous();
        Ok(GeneratorOutput {
            image: float(out.image),
            cam_logit: float(out.cam_logit),
            heatmap: float(out.heatmap),
        })
    }

    /// The translated batch, on the CPU, in [-1, 1].
    pub fn translate(&self, input: &Tensor) -> Result<Tensor> {
        Ok(self.forward(input)?.image.to_device(Device::Cpu))
    }

    pub fn config(&self) -> &ModelConfig {
        &self.checkpoint.meta.model
    }

    pub fn meta(&self) -> &CheckpointMeta {
        &self.checkpoint.meta
    }

    /// The resolved checkpoint directory the weights came from.
    pub fn dir(&self) -> &Path {
        &self.checkpoint.dir
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    pub fn device(&self) -> Device {
        self.device
    }
}

/// Writes a serving artifact holding one generator into run directory `out` (as
/// `export-NNNNNNN/` plus `latest`), so a server watching `out` picks it up like a training run.
pub fn export(
    checkpoint: &Checkpoint,
    direction: Direction,
    out: &Path,
    half: bool,
) -> Result<PathBuf> {
    let file = direction.generator().file_name();
    let weights = checkpoint.read_tensors(&file)?;
    let named: Vec<(String, Tensor)> = weights.into_iter().collect();
    let mut writer =
        CheckpointWriter::begin(out, &checkpoint_name("export", checkpoint.meta.iteration))?;
    writer.add_tensors(&file, &named, half.then_some(Kind::Half))?;
    let mut meta = CheckpointMeta::new(
        CheckpointKind::Export,
        &checkpoint.meta.model,
        checkpoint.meta.iteration,
    );
    meta.direction = Some(direction);
    meta.source = Some(format!("export of {}", checkpoint.dir.display()));
    writer.commit(meta)
}

/// Publishes a freshly initialised generator as an export in run directory `out`: a real,
/// loadable model for tests, demos and benchmarks of the serving path.
pub fn write_random_export(
    out: &Path,
    config: &ModelConfig,
    seed: i64,
    iteration: u64,
) -> Result<PathBuf> {
    config.validate()?;
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let _generator = Generator::new(&vs.root(), config);
    let mut writer = CheckpointWriter::begin(out, &checkpoint_name("export", iteration))?;
    writer.add_tensors(
        &Direction::A2B.generator().file_name(),
        &tensors::named_variables(&vs),
        None,
    )?;
    let mut meta = CheckpointMeta::new(CheckpointKind::Export, config, iteration);
    meta.direction = Some(Direction::A2B);
    meta.source = Some(format!("random initialisation, seed {seed}"));
    writer.commit(meta)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bfloat16_translates_like_float32_within_a_few_grey_levels() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ModelConfig {
            img_size: 96,
            img_ch: 3,
            ch: 8,
            n_res: 2,
            light: true,
            ..ModelConfig::default()
        };
        write_random_export(dir.path(), &cfg, 3, 1).unwrap();
        let f32 = Translator::load(dir.path(), Direction::A2B, Device::Cpu).unwrap();
        let bf16 = Translator::load(dir.path(), Direction::A2B, Device::Cpu)
            .unwrap()
            .with_precision(Precision::Bf16);
        assert_eq!((f32.kind(), bf16.kind()), (Kind::Float, Kind::BFloat16));
        // The conversion kept the weights channels-last.
        for (name, w) in bf16.vs.variables() {
            if w.dim() == 4 {
                assert_eq!(
                    w.stride()[1],
                    1,
                    "{name} is not channels-last: {:?}",
                    w.stride()
                );
            }
        }
        tch::manual_seed(0);
        let x = Tensor::rand([2, 3, 96, 96], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let (a, b) = (f32.translate(&x).unwrap(), bf16.translate(&x).unwrap());
        assert_eq!(b.kind(), Kind::Float);
        let diff = (&a - &b).abs();
        // [-1, 1] units: 2/255 is one grey level.
        let mean = diff.mean(Kind::Float).double_value(&[]);
        let max = diff.max().double_value(&[]);
        assert!(
            mean < 0.01 && max < 0.1,
            "bf16 vs f32: mean {mean}, max {max}"
        );
        assert!(mean > 0.0, "bf16 did not change the arithmetic");
    }
}
