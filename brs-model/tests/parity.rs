//! Numerical parity with PyTorch: a checkpoint saved in the official format by PyTorch itself is
//! imported, and our networks' outputs must equal PyTorch's on the same input.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use brs_model::checkpoint::Checkpoint;
use brs_model::error::ImportError;
use brs_model::networks::{NetworkKind, Networks};
use brs_model::pickle::PickleError;
use brs_model::{Direction, ModelConfig, ModelError, Translator, import, tensors};
use brs_testkit::setup::python;
use tch::{Device, Tensor};

const TOLERANCE: f64 = 1e-4;

fn reference(dir: &Path, img: i64, ch: i64, n_res: i64, light: bool) -> BTreeMap<String, Tensor> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/make_reference_pt.py");
    let status = Command::new(python())
        .arg(script)
        .arg(dir)
        .args([img, ch, n_res, light as i64, 7].map(|v| v.to_string()))
        .status()
        .expect("run python");
    assert!(status.success(), "make_reference_pt.py failed");
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    tensors::from_safetensors(&bytes).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn check(img: i64, ch: i64, n_res: i64, light: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let refs = reference(tmp.path(), img, ch, n_res, light);
    let pt = tmp.path().join("selfie2anime_params_0001000.pt");
    let run = tmp.path().join("run");
    // A light model's weights do not fix the image size: it is passed in, as users would.
    import::import_pytorch(&pt, &run, img).unwrap();
    let ck = Checkpoint::open(&run).unwrap();
    let expect = ModelConfig {
        img_size: img,
        img_ch: 3,
        ch,
        n_res,
        light,
        ..ModelConfig::default()
    };
    assert_eq!(ck.meta.model, expect, "inferred config");
    assert_eq!(ck.meta.iteration, 1000, "iteration from the file name");
    let x = &refs["x"];

    for direction in [Direction::A2B, Direction::B2A] {
        let t = Translator::load(&run, direction, Device::Cpu).unwrap();
        let out = t.forward(x).unwrap();
        let name = direction.generator().name();
        for (label, ours) in [
            ("image", &out.image),
            ("cam_logit", &out.cam_logit),
            ("heatmap", &out.heatmap),
        ] {
            let theirs = &refs[&format!("{name}.{label}")];
            // The heatmap is a sum over 4*ch channels of unbounded activations: compare relatively.
            let scale = theirs.abs().max().double_value(&[]).max(1.0);
            let d = max_diff(ours, theirs) / scale;
            assert!(
                d < TOLERANCE,
                "{name} {label}: max abs diff {d:e} (light={light})"
            );
        }
    }

    // Discriminators in eval mode use the stored u and v, as PyTorch's eval mode does.
    let nets = Networks::new(&expect, Device::Cpu).unwrap();
    nets.load_from(&ck).unwrap();
    let _guard = tch::no_grad_guard();
    for (kind, d) in [
        (NetworkKind::DisGA, &nets.dis_ga),
        (NetworkKind::DisGB, &nets.dis_gb),
        (NetworkKind::DisLA, &nets.dis_la),
        (NetworkKind::DisLB, &nets.dis_lb),
    ] {
        let out = d.forward(x, false);
        for (label, ours) in [
            ("logit", &out.logit),
            ("cam_logit", &out.cam_logit),
            ("heatmap", &out.heatmap),
        ] {
            let theirs = &refs[&format!("{}.{label}", kind.name())];
            let scale = theirs.abs().max().double_value(&[]).max(1.0);
            let d = max_diff(ours, theirs) / scale;
            assert!(d < TOLERANCE, "{} {label}: max diff {d:e}", kind.name());
        }
    }
}

#[test]
fn full_generator_matches_pytorch() {
    check(96, 8, 2, false);
}

#[test]
fn light_generator_matches_pytorch() {
    check(128, 16, 3, true);
}

#[test]
fn a_file_that_is_not_a_ugatit_checkpoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pt = tmp.path().join("other.pt");
    let code = format!(
        "import torch; torch.save({{'genA2B': {{'w': torch.zeros(2)}}}}, {:?})",
        pt.to_str().unwrap()
    );
    assert!(
        Command::new(python())
            .args(["-c", &code])
            .status()
            .unwrap()
            .success()
    );
    let run = tmp.path().join("run");
    let err = import::import_pytorch(&pt, &run, 256).unwrap_err();
    assert!(
        matches!(
            &err,
            ModelError::Import(ImportError::MissingKey {
                network: "genA2B",
                key: "DownBlock.1.weight"
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("DownBlock.1.weight"), "{err}");
    assert!(!run.join("latest").exists());
    // Not a torch.save file: the reader's own error comes through, typed.
    let garbage = tmp.path().join("garbage.pt");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let err = import::import_pytorch(&garbage, &run, 256).unwrap_err();
    assert!(
        matches!(
            &err,
            ModelError::Import(ImportError::Read {
                cause: PickleError::Malformed(_),
                ..
            })
        ),
        "{err}"
    );
    let missing = tmp.path().join("missing.pt");
    let err = import::import_pytorch(&missing, &run, 256).unwrap_err();
    assert!(
        matches!(&err, ModelError::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
}
