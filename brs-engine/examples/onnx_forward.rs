//! Times ONNX Runtime's one-image forward pass of a checkpoint as brs-serve loads it (its malloc
//! profile, no lanes), with ONNX Runtime's arena off (the server's choice) or on:
//! `onnx_forward MODEL_DIR [ARENA 0|1] [PASSES]`, best and median of the passes. With
//! `OMP_WAIT_POLICY=ACTIVE` its threads spin between operators (brs-serve sets PASSIVE unless
//! told). scripts/bench-serve's ONNX Runtime forward in Python is the same pass outside brs.
use std::time::Instant;

use brs_engine::{Batch, Engine, EngineOptions, EngineSpec, OnnxLanes};
use brs_model::{Direction, Precision};

fn main() -> anyhow::Result<()> {
    brs_model::alloc::reexec_with_tuned_malloc(brs_model::alloc::Profile::Serving);
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: onnx_forward MODEL_DIR [ARENA 0|1] [PASSES]"))?;
    let arena = args.next().is_some_and(|a| a == "1");
    let passes: usize = args.next().map_or(Ok(15), |p| p.parse())?.max(1);
    let opts = EngineOptions {
        engine: EngineSpec::Onnx,
        device: brs_model::device::Device::Cpu,
        precision: Precision::F32,
        onnx_arena: arena,
        onnx_lanes: OnnxLanes::Off,
    };
    let e = Engine::open(&dir, Direction::A2B, &opts)?;
    let size = e.config().img_size;
    let x = Batch::from_fn(&[1, 3, size, size], |i, n| {
        (i as f32 / n as f32) * 2.0 - 1.0
    })?;
    e.translate_batch(&x)?;
    let mut ms: Vec<f64> = (0..passes)
        .map(|_| {
            let t = Instant::now();
            e.translate_batch(&x)
                .map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    ms.sort_by(f64::total_cmp);
    println!(
        "arena {arena}: best {:.1} ms, median {:.1} ms",
        ms[0],
        ms[ms.len() / 2]
    );
    Ok(())
}
