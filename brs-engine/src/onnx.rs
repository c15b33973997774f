//! The generator run by ONNX Runtime: exported in-process from the checkpoint into a private
//! temporary directory, loaded into a session, and the files removed as soon as the session
//! holds the model.
//!
//! The session is built like the face detectors' (brs-image's loader: one ONNX Runtime library
//! per process, never loaded twice): all graph optimisations, one inter-op thread, and as many
//! intra-op threads as libtorch uses, so either engine gets the same cores. Its threads spin
//! between operators unless `OMP_WAIT_POLICY=PASSIVE` (what brs-serve sets for libtorch's
//! OpenMP threads, brs-model's `alloc`): a server shares its cores with decodes, a trainer or
//! `translate` does not. Its CPU arena is the caller's choice ([`EngineOptions::onnx_arena`]):
//! with it a session runs batches faster and holds the memory of its largest batch for good.

use std::path::Path;
use std::sync::Mutex;

use brs_image::detect::{DetectError, SessionOptions, build_session};
use brs_model::checkpoint::Checkpoint;
use brs_model::onnx::{ExternalData, INPUT, OUTPUT_IMAGE};
use brs_model::{Direction, ModelConfig, ModelError};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use tch::{Device, Kind, Tensor};

use crate::{EngineError, EngineOptions};

/// A generator in an ONNX Runtime session.
pub(crate) struct OnnxGenerator {
    /// `Session::run` takes `&mut`: one caller at a time (a style's inference thread).
    session: Mutex<Session>,
}

impl OnnxGenerator {
    pub(crate) fn load(
        checkpoint: &Checkpoint,
        direction: Direction,
        opts: &EngineOptions,
    ) -> Result<OnnxGenerator, EngineError> {
        let tmp = std::env::temp_dir();
        Self::load_via(checkpoint, direction, opts, &tmp, ExternalData::Auto)
    }

    /// [`load`](Self::load) through a temporary directory in `tmp`, the weights placed as
    /// `external` says (beside the graph above 2 GiB).
    fn load_via(
        checkpoint: &Checkpoint,
        direction: Direction,
        opts: &EngineOptions,
        tmp: &Path,
        external: ExternalData,
    ) -> Result<OnnxGenerator, EngineError> {
        // First, so a missing library is reported as such before any export work.
        brs_image::detect::init_onnxruntime(None).map_err(|e| runtime_error(&e))?;
        let dir = tempfile::Builder::new()
            .prefix("brs-onnx-")
            .tempdir_in(tmp)
            .map_err(EngineError::TempDir)?;
        let written = brs_model::onnx::export(checkpoint, direction, dir.path(), external)
            .map_err(|e| match e {
                // Writing into the temporary directory (a full disk): the export's failure, not
                // the checkpoint's.
                ModelError::Io { ref path, .. } if path.starts_with(dir.path()) => {
                    EngineError::Export(e)
                }
                ModelError::Onnx { .. } => EngineError::Export(e),
                // Reading the checkpoint: the same failure libtorch's load would report.
                e => EngineError::Model(e),
            })?;
        // The export read the weights and freed them; malloc keeps freed memory (the servers'
        // profile, brs_model::alloc), and ONNX Runtime's load about doubles the model while it
        // builds the session: give the export's memory back first, so the two never add up (the
        // full 256 px generator peaked at 3.3 GB instead of 2.2).
        brs_model::alloc::release_free_memory();
        let options = SessionOptions {
            optimization: GraphOptimizationLevel::All,
            intra_threads: usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1),
            arena: opts.onnx_arena,
            spin: !std::env::var("OMP_WAIT_POLICY")
                .is_ok_and(|p| p.eq_ignore_ascii_case("passive")),
        };
        let session = build_session(&written.model, options).map_err(|e| match e {
            DetectError::Runtime(_) => runtime_error(&e),
            e => EngineError::Session(e.to_string()),
        })?;
        // The session holds the weights now; the files would only take disk (1.1 GB for the
        // full model). Dropping the directory removes them; an error here costs disk, not the
        // model.
        let _ = dir.close();
        // ONNX Runtime has freed the model's bytes it parsed: as large as the weights again.
        brs_model::alloc::release_free_memory();
        Ok(OnnxGenerator {
            session: Mutex::new(session),
        })
    }

    /// Runs a batch [N, C, S, S] in [-1, 1]; the image output, float32 on the CPU.
    pub(crate) fn translate(
        &self,
        input: &Tensor,
        cfg: &ModelConfig,
    ) -> Result<Tensor, EngineError> {
        let shape = input.size();
        if shape.len() != 4
            || shape[1] != cfg.img_ch
            || shape[2] != cfg.img_size
            || shape[3] != cfg.img_size
        {
            return Err(ModelError::InputShape {
                found: shape,
                channels: cfg.img_ch,
                side: cfg.img_size,
            }
            .into());
        }
        let x = input
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
            .view(-1);
        let data = Vec::<f32>::try_from(&x).map_err(|e| EngineError::Inference(e.to_string()))?;
        let value = ort::value::Tensor::from_array((shape, data))
            .map_err(|e| EngineError::Inference(e.to_string()))?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session
            .run(ort::inputs![INPUT => value])
            .map_err(|e| EngineError::Inference(e.to_string()))?;
        let image = outputs
            .get(OUTPUT_IMAGE)
            .ok_or_else(|| EngineError::Inference(format!("no output {OUTPUT_IMAGE:?}")))?;
        let (dims, values) = image
            .try_extract_tensor::<f32>()
            .map_err(|e| EngineError::Inference(format!("output {OUTPUT_IMAGE:?}: {e}")))?;
        let dims: Vec<i64> = dims.iter().copied().collect();
        Ok(Tensor::from_slice(values).view(dims.as_slice()))
    }
}

fn runtime_error(e: &DetectError) -> EngineError {
    EngineError::Runtime(e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use brs_model::Precision;

    /// The files are gone once the session holds the model, weights beside the graph included
    /// (what a full model above 256 px needs): the session runs on without them.
    #[test]
    fn the_export_is_deleted_once_the_session_holds_it() {
        let run = tempfile::tempdir().unwrap();
        let cfg = brs_testkit::model::tiny_config();
        brs_model::translator::write_random_export(run.path(), &cfg, 2, 1).unwrap();
        let checkpoint = Checkpoint::open(run.path()).unwrap();
        let opts = EngineOptions {
            engine: crate::EngineSpec::Onnx,
            device: Device::Cpu,
            precision: Precision::F32,
            onnx_arena: false,
        };
        let x = Tensor::rand([2, 3, 96, 96], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let mut outputs = Vec::new();
        for external in [ExternalData::Auto, ExternalData::Always] {
            let tmp = tempfile::tempdir().unwrap();
            let g =
                OnnxGenerator::load_via(&checkpoint, Direction::A2B, &opts, tmp.path(), external)
                    .unwrap();
            assert_eq!(
                std::fs::read_dir(tmp.path()).unwrap().count(),
                0,
                "{external:?}"
            );
            outputs.push(g.translate(&x, &cfg).unwrap());
        }
        let d = (&outputs[0] - &outputs[1]).abs().max().double_value(&[]);
        assert_eq!(d, 0.0, "the same graph and weights either way");
    }
}
