//! `brs-train export --format onnx` through the whole binary: from a training checkpoint, either
//! direction, into a directory or a named file, with and without external data; the model passes
//! `onnx.checker` and ONNX Runtime translates like brs; `--half` is refused with onnx.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use brs_model::checkpoint::{CheckpointKind, CheckpointMeta, CheckpointWriter, checkpoint_name};
use brs_model::{Direction, ModelConfig, Networks, Translator};
use brs_testkit::onnx::{check_and_run, max_abs_diff};
use common::{run, s, text};
use tch::{Device, Kind, Tensor};

/// A training checkpoint of freshly initialised networks in run directory `run`.
fn training_checkpoint(run: &Path, cfg: &ModelConfig) {
    tch::manual_seed(11);
    let nets = Networks::new(cfg, Device::Cpu).unwrap();
    let mut writer = CheckpointWriter::begin(run, &checkpoint_name("ckpt", 7)).unwrap();
    nets.add_to(&mut writer).unwrap();
    writer
        .commit(CheckpointMeta::new(CheckpointKind::Training, cfg, 7))
        .unwrap();
}

#[test]
fn export_format_onnx_writes_a_model_onnx_runtime_runs_like_brs() {
    let dir = brs_testkit::tempdir("brs-train-onnx-");
    let runs = dir.path().join("run");
    let cfg = brs_testkit::model::tiny_config();
    training_checkpoint(&runs, &cfg);

    // Into a directory, the B to A generator.
    let out = dir.path().join("onnx");
    let result = run(&[
        "export",
        "--checkpoint",
        s(&runs),
        "--output",
        s(&out),
        "--format",
        "onnx",
        "--direction",
        "b2a",
    ]);
    assert!(result.status.success(), "{}", text(&result));
    let stdout = String::from_utf8_lossy(&result.stdout);
    let model = out.join("genB2A.onnx");
    for expected in [
        "exported b2a of ",
        "(iteration 7) as ONNX (opset 17)",
        s(&model),
        "input `input`: float32 [batch, 3, 96, 96] in [-1, 1]",
        "`heatmap` [batch, 1, 24, 24]",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in:\n{stdout}");
    }
    assert_eq!(
        brs_testkit::file_names(&out),
        ["genB2A.onnx"],
        "no temp file is left"
    );

    tch::manual_seed(2);
    let x = Tensor::rand([2, 3, 96, 96], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let ours = Translator::load(&runs, Direction::B2A, Device::Cpu)
        .unwrap()
        .translate(&x)
        .unwrap();
    let theirs = check_and_run(&model, &x, &dir.path().join("ort"));
    let diff = max_abs_diff(&ours, &theirs.outputs["image"]);
    // brs-model's tests/onnx_export.rs explains 1e-4 (one grey level is 2/255).
    assert!(diff <= 1e-4, "ONNX Runtime differs from brs by {diff}");
    assert_eq!(theirs.info["metadata"]["brs.direction"], "b2a");

    // A named file, the weights beside it.
    let named = dir.path().join("named").join("bts.onnx");
    let result = run(&[
        "export",
        "--checkpoint",
        s(&runs),
        "--output",
        s(&named),
        "--format",
        "onnx",
        "--external-data",
    ]);
    assert!(result.status.success(), "{}", text(&result));
    let stdout = String::from_utf8_lossy(&result.stdout);
    let listed = brs_testkit::file_names(named.parent().unwrap());
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed[1].starts_with("bts.onnx.") && listed[1].ends_with(".data"),
        "{listed:?}"
    );
    assert!(
        stdout.contains("weights in ") && stdout.contains(&listed[1]),
        "{stdout}"
    );
    let theirs = check_and_run(&named, &x, &dir.path().join("ort-external"));
    let ours = Translator::load(&runs, Direction::A2B, Device::Cpu)
        .unwrap()
        .translate(&x)
        .unwrap();
    let diff = max_abs_diff(&ours, &theirs.outputs["image"]);
    assert!(
        diff <= 1e-4,
        "external data: ONNX Runtime differs by {diff}"
    );

    // --half is the brs format's, --external-data the onnx format's: each refused elsewhere.
    let refused = dir.path().join("refused");
    for (flags, named) in [
        (&["--format", "onnx", "--half"][..], "--half"),
        (&["--external-data"][..], "--external-data"),
    ] {
        let mut args = vec!["export", "--checkpoint", s(&runs), "--output", s(&refused)];
        args.extend_from_slice(flags);
        let result = run(&args);
        assert!(!result.status.success(), "{}", text(&result));
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains(named), "{stderr}");
        assert!(!refused.exists(), "nothing written");
    }
}
