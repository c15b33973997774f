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
//!
//! Beside that session, a caller may ask for one single-thread session per core ("lanes",
//! [`EngineOptions::onnx_lanes`]: `brs-train translate` and brs-serve do): one image uses every
//! core in the whole session (latency), while several waiting images may instead run side by
//! side, as Flask's two single-thread ONNX Runtime workers reached 88% of the GEMM ceiling where
//! one two-thread session reached 68% (issue 25): a share of a batch on each lane
//! (`brs-train translate`), or one image per lane, each lane run by a thread of the caller's
//! that takes the next image when its own is done ([`crate::LaneSessions`]: brs-serve). Which is
//! faster at each batch size is measured at load ([`crate::Regime`]) unless the caller says
//! `always`; a busy server's figures are in docs/benchmarks.md.

use std::path::Path;
use std::sync::Mutex;

use brs_image::detect::{DetectError, SessionOptions, build_session};
use brs_model::checkpoint::Checkpoint;
use brs_model::onnx::{ExternalData, INPUT, OUTPUT_IMAGE};
use brs_model::{Direction, ModelConfig, ModelError};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::{Batch, EngineError, EngineOptions, OnnxLanes};

/// Most lanes built, whatever the core count: past that the timing at load grows long and the
/// copies of the weights many.
const MAX_LANES: usize = 8;

/// Most bytes of weights all lanes together hold (each session has its own copy): the light
/// 256 px generator (40 MB) gets a lane per core on up to 6 cores, the full one (1.1 GB) none.
const LANES_MAX_WEIGHT_BYTES: u64 = 256 << 20;

/// A generator in an ONNX Runtime session, and maybe single-thread sessions beside it.
pub(crate) struct OnnxGenerator {
    /// `Session::run` takes `&mut`: one caller at a time (a style's inference thread).
    session: Mutex<Session>,
    /// Single-thread sessions of the same model, run side by side for batches.
    lanes: Vec<Mutex<Session>>,
    /// Whether a batch of `i + 2` images runs split over the lanes (larger batches follow the
    /// last entry); empty: never.
    side_by_side: Vec<bool>,
}

impl OnnxGenerator {
    pub(crate) fn load(
        checkpoint: &Checkpoint,
        direction: Direction,
        opts: &EngineOptions,
    ) -> Result<OnnxGenerator, EngineError> {
        let tmp = std::env::temp_dir();
        let threads = crate::cores();
        Self::load_via(
            checkpoint,
            direction,
            opts,
            &tmp,
            ExternalData::Auto,
            threads,
        )
    }

    /// [`load`](Self::load) through a temporary directory in `tmp`, the weights placed as
    /// `external` says (beside the graph above 2 GiB), for `threads` cores.
    fn load_via(
        checkpoint: &Checkpoint,
        direction: Direction,
        opts: &EngineOptions,
        tmp: &Path,
        external: ExternalData,
        threads: usize,
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
        let options = |intra_threads| SessionOptions {
            optimization: GraphOptimizationLevel::All,
            intra_threads,
            arena: opts.onnx_arena,
            spin: !std::env::var("OMP_WAIT_POLICY")
                .is_ok_and(|p| p.eq_ignore_ascii_case("passive")),
        };
        let build = |intra_threads| {
            let session =
                build_session(&written.model, options(intra_threads)).map_err(|e| match e {
                    DetectError::Runtime(_) => runtime_error(&e),
                    e => EngineError::Session(e.to_string()),
                });
            // ONNX Runtime has freed the model's bytes it parsed: as large as the weights again.
            brs_model::alloc::release_free_memory();
            session.map(Mutex::new)
        };
        let session = build(threads)?;
        let lanes = if opts.onnx_lanes != OnnxLanes::Off {
            (0..lane_count(threads, written.parameters * 4))
                .map(|_| build(1))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        // The sessions hold the weights now; the files would only take disk (1.1 GB for the
        // full model). Dropping the directory removes them; an error here costs disk, not the
        // model.
        let _ = dir.close();
        Ok(OnnxGenerator {
            session,
            lanes,
            side_by_side: Vec::new(),
        })
    }

    /// How many single-thread sessions can run a batch side by side (0: none).
    pub(crate) fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Sets, for each batch size from 2, whether it runs split over the lanes.
    pub(crate) fn set_side_by_side(&mut self, from_two: Vec<bool>) {
        self.side_by_side = from_two;
    }

    /// How many of `n` waiting images to run as one batch: as many as fill the lanes evenly when
    /// they run side by side (three on two lanes would keep one lane waiting for the other's
    /// second image, as long as a whole pass; the third goes with the next batch), else `n`.
    pub(crate) fn fitting_batch(&self, n: usize) -> usize {
        let lanes = self.lanes.len();
        if self.splits(n) && n > lanes && !n.is_multiple_of(lanes) {
            n - n % lanes
        } else {
            n
        }
    }

    /// How many lanes a caller may keep busy with one image each (its own thread on each):
    /// all of them when a batch filling them was timed faster side by side at load, else none.
    pub(crate) fn independent_lanes(&self) -> usize {
        if self.splits(self.lanes.len()) {
            self.lanes.len()
        } else {
            0
        }
    }

    /// Runs a batch on lane `k` alone, on the caller's thread; the other lanes stay free for
    /// other callers.
    pub(crate) fn on_lane(
        &self,
        k: usize,
        input: &Batch,
        cfg: &ModelConfig,
    ) -> Result<Batch, EngineError> {
        let lane = self.lanes.get(k).ok_or_else(|| {
            EngineError::Inference(format!("lane {k} asked of {} lanes", self.lanes.len()))
        })?;
        run(lane, input, cfg)
    }

    /// Whether a batch of `n` images runs split over the lanes.
    fn splits(&self, n: usize) -> bool {
        n.checked_sub(2)
            .and_then(|i| self.side_by_side.get(i).or(self.side_by_side.last()))
            .copied()
            .unwrap_or(false)
    }

    /// Runs a batch [N, C, S, S] in [-1, 1] the way measured fastest for N images; the image
    /// output, float32 on the CPU.
    pub(crate) fn translate(&self, input: &Batch, cfg: &ModelConfig) -> Result<Batch, EngineError> {
        if self.splits(input.len()) {
            self.side_by_side(input, cfg)
        } else {
            self.one_session(input, cfg)
        }
    }

    /// The whole batch in the session on every core.
    pub(crate) fn one_session(
        &self,
        input: &Batch,
        cfg: &ModelConfig,
    ) -> Result<Batch, EngineError> {
        run(&self.session, input, cfg)
    }

    /// The batch split in up to one share per lane, the shares run at once, each on its own
    /// thread and single-thread session.
    pub(crate) fn side_by_side(
        &self,
        input: &Batch,
        cfg: &ModelConfig,
    ) -> Result<Batch, EngineError> {
        let shares = self.lanes.len().min(input.len());
        if shares < 2 {
            return self.one_session(input, cfg);
        }
        let parts = input.split(shares);
        let outputs: Vec<Result<Batch, EngineError>> = std::thread::scope(|scope| {
            let running: Vec<_> = parts
                .into_iter()
                .zip(&self.lanes)
                .map(|(part, lane)| scope.spawn(move || run(lane, &part, cfg)))
                .collect();
            running
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(EngineError::Inference(
                            "a side-by-side session panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        let outputs = outputs.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(Batch::concat(&outputs)?)
    }
}

/// Lanes for `threads` cores and a model of `weight_bytes`: one per core within
/// [`MAX_LANES`] and [`LANES_MAX_WEIGHT_BYTES`], and none unless at least two.
fn lane_count(threads: usize, weight_bytes: u64) -> usize {
    let affordable = LANES_MAX_WEIGHT_BYTES / weight_bytes.max(1);
    let n = threads
        .min(MAX_LANES)
        .min(usize::try_from(affordable).unwrap_or(usize::MAX));
    if n >= 2 { n } else { 0 }
}

/// Runs a batch [N, C, S, S] in [-1, 1] in `session`; the image output, float32 on the CPU.
fn run(session: &Mutex<Session>, input: &Batch, cfg: &ModelConfig) -> Result<Batch, EngineError> {
    let shape = input.dims();
    cfg.check_input(&shape)?;
    let value = ort::value::Tensor::from_array((shape, input.values().to_vec()))
        .map_err(|e| EngineError::Inference(e.to_string()))?;
    let mut session = session.lock().unwrap_or_else(|e| e.into_inner());
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
    Ok(Batch::from_dims(&dims, values.to_vec())?)
}

fn runtime_error(e: &DetectError) -> EngineError {
    EngineError::Runtime(e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use brs_model::Precision;
    use brs_model::device::Device;

    /// `n` images of the tiny model's size, values spread over [-1, 1] (a fixed pseudo-random
    /// sequence: the tests run with and without libtorch).
    fn random(n: usize) -> Batch {
        let mut state = 0x2545_f491_u32;
        let values = (0..n * 3 * 96 * 96)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1 << 23) as f32 - 1.0
            })
            .collect();
        Batch::new([n, 3, 96, 96], values).unwrap()
    }

    fn max_diff(a: &Batch, b: &Batch) -> f32 {
        assert_eq!(a.shape(), b.shape());
        a.values()
            .iter()
            .zip(b.values())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// A random tiny export (its directory, kept alive) and its checkpoint.
    fn tiny_export() -> (tempfile::TempDir, ModelConfig, Checkpoint) {
        let run = tempfile::tempdir().unwrap();
        let cfg = brs_testkit::model::tiny_config();
        brs_model::translator::write_random_export(run.path(), &cfg, 2, 1).unwrap();
        let checkpoint = Checkpoint::open(run.path()).unwrap();
        (run, cfg, checkpoint)
    }

    fn onnx_options(onnx_lanes: OnnxLanes) -> EngineOptions {
        EngineOptions {
            engine: crate::EngineSpec::Onnx,
            device: Device::Cpu,
            precision: Precision::F32,
            onnx_arena: false,
            onnx_lanes,
        }
    }

    /// The files are gone once the session holds the model, weights beside the graph included
    /// (what a full model above 256 px needs): the session runs on without them.
    #[test]
    fn the_export_is_deleted_once_the_session_holds_it() {
        let (_run, cfg, checkpoint) = tiny_export();
        let opts = onnx_options(OnnxLanes::Off);
        let x = random(2);
        let mut outputs = Vec::new();
        for external in [ExternalData::Auto, ExternalData::Always] {
            let tmp = tempfile::tempdir().unwrap();
            let g = OnnxGenerator::load_via(
                &checkpoint,
                Direction::A2B,
                &opts,
                tmp.path(),
                external,
                1,
            )
            .unwrap();
            assert_eq!(
                std::fs::read_dir(tmp.path()).unwrap().count(),
                0,
                "{external:?}"
            );
            outputs.push(g.translate(&x, &cfg).unwrap());
        }
        assert_eq!(
            outputs[0], outputs[1],
            "the same graph and weights either way"
        );
    }

    /// A batch split over the lanes gives what the session on every core gives (to float
    /// rounding), and `translate` follows the regime set for each batch size.
    #[test]
    fn batches_split_over_lanes_equal_the_whole_session() {
        let (_run, cfg, checkpoint) = tiny_export();
        let opts = onnx_options(OnnxLanes::Timed);
        let tmp = tempfile::tempdir().unwrap();
        let mut g = OnnxGenerator::load_via(
            &checkpoint,
            Direction::A2B,
            &opts,
            tmp.path(),
            ExternalData::Auto,
            2,
        )
        .unwrap();
        assert_eq!(g.lanes(), 2);
        let x = random(3);
        let whole = g.one_session(&x, &cfg).unwrap();
        let split = g.side_by_side(&x, &cfg).unwrap();
        let d = max_diff(&whole, &split);
        assert!(d < 1e-5, "side by side differs by {d}");
        let same = |a: &Batch, b: &Batch| a == b;
        assert!(
            same(&g.translate(&x, &cfg).unwrap(), &whole),
            "no regime set: one session"
        );
        assert_eq!(
            (g.fitting_batch(3), g.fitting_batch(4)),
            (3, 4),
            "one session takes all"
        );
        assert_eq!(g.independent_lanes(), 0, "side by side not timed faster");
        g.set_side_by_side(vec![true]);
        assert_eq!(g.independent_lanes(), 2);
        let one = x.split(3).swap_remove(0);
        let on_lanes: Vec<Batch> = std::thread::scope(|s| {
            let (g, one, cfg) = (&g, &one, &cfg);
            let running: Vec<_> = (0..2)
                .map(|k| s.spawn(move || g.on_lane(k, one, cfg).unwrap()))
                .collect();
            running.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for out in &on_lanes {
            let d = max_diff(out, &whole.split(3)[0]);
            assert!(d < 1e-5, "a lane run beside another differs by {d}");
        }
        assert!(matches!(
            g.on_lane(2, &one, &cfg),
            Err(EngineError::Inference(_))
        ));
        assert!(
            same(&g.translate(&x, &cfg).unwrap(), &split),
            "3 images follow the 2's regime"
        );
        let fitting: Vec<usize> = (1..=5).map(|n| g.fitting_batch(n)).collect();
        assert_eq!(fitting, [1, 2, 2, 4, 4], "two lanes take even batches");
        assert!(
            same(
                &g.translate(&one, &cfg).unwrap(),
                &g.one_session(&one, &cfg).unwrap()
            ),
            "one image always in the session on every core"
        );
        g.set_side_by_side(vec![false]);
        assert!(same(&g.translate(&x, &cfg).unwrap(), &whole));
    }

    #[test]
    fn lanes_are_one_per_core_within_the_memory_bound() {
        let light = 40 << 20;
        assert_eq!(lane_count(2, light), 2);
        assert_eq!(lane_count(4, light), 4);
        assert_eq!(lane_count(16, light), 6, "256 MiB / 40 MiB");
        assert_eq!(lane_count(32, 1 << 20), MAX_LANES);
        assert_eq!(lane_count(1, light), 0, "one core: nothing to run beside");
        assert_eq!(
            lane_count(2, 1100 << 20),
            0,
            "the full generator: no copies"
        );
        assert_eq!(lane_count(2, 0), 2);
    }
}
