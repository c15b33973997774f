//! The same image whatever the engine: ONNX Runtime's translation equals libtorch's float32 one
//! within 1e-4 in [-1, 1] (a grey level is 2/255), for both flavours, light and full, batches
//! included; and it matches the official PyTorch code as libtorch's does (brs-model's
//! tests/parity.rs). `auto` times both and keeps the faster.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use brs_engine::{Engine, EngineError, EngineKind, EngineOptions, EngineSpec};
use brs_model::config::Flavour;
use brs_model::{Direction, ModelConfig, Precision, import, tensors};
use brs_testkit::onnx::max_abs_diff;
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-4;

fn options(engine: EngineSpec) -> EngineOptions {
    EngineOptions {
        engine,
        device: Device::Cpu,
        precision: Precision::F32,
        onnx_arena: false,
        onnx_lanes: brs_engine::OnnxLanes::Off,
    }
}

fn model(flavour: Flavour, light: bool) -> ModelConfig {
    ModelConfig {
        img_size: 96,
        img_ch: 3,
        ch: 8,
        n_res: 2,
        light,
        flavour,
        ..ModelConfig::default()
    }
}

/// Two random images in [-1, 1]. Not a smooth ramp: through the TensorFlow flavour's freshly
/// initialised generator (no convolution biases) it leaves feature maps of almost no variance,
/// which the norms divide by, and there both engines' float32 differ from a float64 run by a few
/// 1e-4 (ONNX Runtime's the less): float32's limit, not a difference between the engines.
fn batch(size: i64) -> Tensor {
    Tensor::rand([2, 3, size, size], (Kind::Float, Device::Cpu)) * 2.0 - 1.0
}

fn check(flavour: Flavour, light: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = model(flavour, light);
    brs_model::translator::write_random_export(dir.path(), &cfg, 5, 1).unwrap();
    let torch = Engine::open(dir.path(), Direction::A2B, &options(EngineSpec::Torch)).unwrap();
    let onnx = Engine::open(dir.path(), Direction::A2B, &options(EngineSpec::Onnx)).unwrap();
    assert_eq!(
        (torch.kind(), onnx.kind()),
        (EngineKind::Torch, EngineKind::Onnx)
    );
    assert_eq!(onnx.precision_name(), "f32");
    assert!(onnx.timings().is_empty(), "an explicit engine is not timed");
    let x = batch(cfg.img_size);
    let (a, b) = (torch.translate(&x).unwrap(), onnx.translate(&x).unwrap());
    assert_eq!(b.size(), [2, 3, 96, 96]);
    assert_eq!(b.kind(), Kind::Float);
    let d = max_abs_diff(&a, &b);
    assert!(
        d < TOLERANCE,
        "{flavour} light={light}: onnx vs torch max abs diff {d:e}"
    );
    // The weights are not all zero: the images differ from their input and from each other.
    assert!(max_abs_diff(&b.get(0), &b.get(1)) > 1e-3);
    // One image alone gives what it gave in the batch.
    let one = onnx.translate(&x.narrow(0, 1, 1)).unwrap();
    assert!(max_abs_diff(&one, &b.narrow(0, 1, 1)) < 1e-5);
}

#[test]
fn onnx_runtime_translates_like_libtorch_pytorch_light() {
    check(Flavour::Pytorch, true);
}

#[test]
fn onnx_runtime_translates_like_libtorch_pytorch_full() {
    check(Flavour::Pytorch, false);
}

#[test]
fn onnx_runtime_translates_like_libtorch_tensorflow_light() {
    check(Flavour::Tensorflow, true);
}

#[test]
fn onnx_runtime_translates_like_libtorch_tensorflow_full() {
    check(Flavour::Tensorflow, false);
}

#[test]
fn auto_times_both_engines_and_keeps_the_faster() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = brs_testkit::model::tiny_config();
    brs_model::translator::write_random_export(dir.path(), &cfg, 5, 1).unwrap();
    // With ONNX Runtime's arena, as brs-train's commands run it (the other tests: without).
    let opts = EngineOptions {
        onnx_arena: true,
        onnx_lanes: brs_engine::OnnxLanes::Off,
        ..options(EngineSpec::Auto)
    };
    let e = Engine::open(dir.path(), Direction::A2B, &opts).unwrap();
    let t = e.timings();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(t[0].engine, e.kind(), "the faster runs: {t:?}");
    assert_ne!(t[0].engine, t[1].engine);
    assert!(t[0].ms > 0.0 && t[0].ms <= t[1].ms, "{t:?}");
    assert!(e.note().is_none());
    let line = e.describe();
    assert!(
        line.contains("torch f32") && line.contains("onnx f32"),
        "{line}"
    );
    let x = batch(cfg.img_size);
    assert_eq!(e.translate(&x).unwrap().size(), [2, 3, 96, 96]);

    // Asked for lanes, the engine that serves has them if it is ONNX Runtime (the contest itself
    // runs without), and libtorch has none.
    let opts = EngineOptions {
        onnx_lanes: brs_engine::OnnxLanes::Always,
        ..options(EngineSpec::Auto)
    };
    let e = Engine::open(dir.path(), Direction::A2B, &opts).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let lanes = e.independent_lanes().map(|l| l.count());
    match e.kind() {
        EngineKind::Onnx if cores >= 2 => {
            assert!(lanes.is_some_and(|n| n >= 2), "{lanes:?}: {}", e.describe());
        }
        _ => assert_eq!(lanes, None, "{}", e.describe()),
    }
}

#[test]
fn each_engine_refuses_what_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = brs_testkit::model::tiny_config();
    brs_model::translator::write_random_export(dir.path(), &cfg, 5, 1).unwrap();
    for spec in [EngineSpec::Torch, EngineSpec::Onnx, EngineSpec::Auto] {
        // An export holds one generator.
        let err = Engine::open(dir.path(), Direction::B2A, &options(spec)).unwrap_err();
        assert!(
            matches!(err, EngineError::Model(_)) && err.to_string().contains("genB2A"),
            "{spec}: {err}"
        );
        // A wrong input size is an error, not a crash.
        let e = Engine::open(dir.path(), Direction::A2B, &options(spec)).unwrap();
        let wrong = Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        assert!(e.translate(&wrong).is_err(), "{spec}");
    }
    let bf16 = EngineOptions {
        precision: Precision::Bf16,
        ..options(EngineSpec::Onnx)
    };
    let err = Engine::open(dir.path(), Direction::A2B, &bf16).unwrap_err();
    assert!(matches!(err, EngineError::Unsupported(_)), "{err}");
}

/// The official PyTorch code's own outputs (brs-model's reference script), through the ONNX
/// engine: parity holds whichever engine runs.
#[test]
fn onnx_engine_matches_the_official_pytorch_generator() {
    let tmp = tempfile::tempdir().unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../brs-model/tests/make_reference_pt.py");
    let (img, ch, n_res) = (96, 8, 2);
    for light in [true, false] {
        let work = tmp.path().join(format!("light-{light}"));
        std::fs::create_dir_all(&work).unwrap();
        let status = Command::new(brs_testkit::setup::python())
            .arg(&script)
            .arg(&work)
            .args([img, ch, n_res, light as i64, 7].map(|v| v.to_string()))
            .status()
            .expect("run python");
        assert!(status.success(), "make_reference_pt.py failed");
        let refs =
            tensors::from_safetensors(&std::fs::read(work.join("reference.safetensors")).unwrap())
                .unwrap();
        let run = work.join("run");
        import::import_pytorch(&work.join("selfie2anime_params_0001000.pt"), &run, img).unwrap();
        for direction in [Direction::A2B, Direction::B2A] {
            let e = Engine::open(&run, direction, &options(EngineSpec::Onnx)).unwrap();
            let ours = e.translate(&refs["x"]).unwrap();
            let theirs = &refs[&format!("{}.image", direction.generator().name())];
            let d = max_abs_diff(&ours, theirs);
            assert!(d < TOLERANCE, "{direction} light={light}: {d:e}");
        }
    }
}
