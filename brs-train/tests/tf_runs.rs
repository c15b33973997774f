//! A run of the authors' TensorFlow code through the whole binary: `import-tf` converts it
//! (written by brs-model's `tests/tf_ugatit.py` port, with Adam's slots, as a training run of
//! the official code leaves it), then `translate` and `export --half` use it and `train
//! --resume` fine-tunes it with the TensorFlow flavour's step, the losses falling.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use brs_model::checkpoint::Checkpoint;
use brs_model::config::Flavour;
use brs_model::{Direction, Translator};
use brs_testkit::tfport;
use common::{config, run, s, synth_dataset, text, train};
use tch::Device;

/// The mean generator loss of the first and of the last `n` lines of metrics.jsonl.
fn first_and_last_g_loss(metrics: &Path, n: usize) -> (f64, f64) {
    let losses: Vec<f64> = std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["g_loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert!(losses.len() >= 2 * n, "{} lines", losses.len());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    (mean(&losses[..n]), mean(&losses[losses.len() - n..]))
}

#[test]
fn import_tf_converts_a_tensorflow_run_that_translates_exports_and_fine_tunes() {
    // The same run brs-model's tests import (cached under the shared target dir).
    let port = tfport::run(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        &["forward", "--ch", "8", "--img", "96", "--adam"],
    );
    let dir = brs_testkit::tempdir("brs-tf-runs-");
    let runs = dir.path().join("run");

    // The directory the official code saves into: its root, holding one model directory.
    let out = run(&[
        "import-tf",
        "--input",
        s(&port.join("checkpoint")),
        "--output",
        s(&runs),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "UGATIT.model-1000 (step 1000)",
        "tensorflow flavour, full model: img_size 96 ch 8 n_res 4, smoothing true (directory name)",
        "Adam moments (training resumes with them)",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in:\n{stdout}");
    }
    let meta = Checkpoint::open(&runs).unwrap().meta;
    assert_eq!(meta.model.flavour, Flavour::Tensorflow);

    // translate and export --half, as with any run.
    let data = dir.path().join("data");
    synth_dataset(&data, 4, 2, 96, 3);
    let drawn = dir.path().join("drawn");
    let out = run(&[
        "translate",
        "--checkpoint",
        s(&runs),
        "--input",
        s(&data.join("testA")),
        "--output",
        s(&drawn),
        "--device",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_dir(&drawn).unwrap().count(), 2);
    let exported = dir.path().join("export");
    let out = run(&[
        "export",
        "--checkpoint",
        s(&runs),
        "--output",
        s(&exported),
        "--half",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let export = Translator::load(&exported, Direction::A2B, Device::Cpu).unwrap();
    assert_eq!(export.config().flavour, Flavour::Tensorflow);
    let x = tch::Tensor::zeros([1, 3, 96, 96], (tch::Kind::Float, Device::Cpu));
    let full = Translator::load(&runs, Direction::A2B, Device::Cpu).unwrap();
    let diff = (export.translate(&x).unwrap() - full.translate(&x).unwrap())
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff < 0.05, "the half-precision export differs by {diff}");

    // Fine-tuning: the TensorFlow flavour's step continues the run with its Adam moments.
    let cfg = config(
        dir.path(),
        "finetune.toml",
        "flavour = \"tensorflow\"\nimg_size = 96\nch = 8\nn_res = 4\nlight = false\n\
         iteration = 1000000\nlr = 2e-4\ndevice = \"cpu\"\nthreads = 1\nlog_freq = 1\n\
         sample_count = 2\nprint_freq = 1000\n",
    );
    let out = train(&cfg, &data, &runs, &["--resume", "--stop-at", "1040"]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at iteration 1000"), "{err}");
    assert!(!err.contains("no optimizer state"), "{err}");
    assert_eq!(Checkpoint::open(&runs).unwrap().meta.iteration, 1040);
    let (first, last) = first_and_last_g_loss(&runs.join("metrics.jsonl"), 8);
    eprintln!("generator loss: {first:.1} over the first 8 iterations, {last:.1} over the last 8");
    assert!(
        last < 0.8 * first,
        "the generator loss did not fall: {first:.1} over the first 8 iterations, {last:.1} \
         over the last 8"
    );
}

#[test]
fn import_tf_makes_a_checkpoint_of_the_generators_alone_a_serving_export() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let port = tfport::run(
        root,
        &["forward", "--ch", "8", "--img", "96", "--generators-only"],
    );
    let dir = brs_testkit::tempdir("brs-tf-runs-");
    let runs = dir.path().join("run");
    let out = run(&[
        "import-tf",
        "--input",
        s(&port.join("checkpoint")),
        "--output",
        s(&runs),
        "--direction",
        "b2a",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("the generators alone: a serving export of b2a"),
        "{stdout}"
    );
    let meta = Checkpoint::open(&runs).unwrap().meta;
    assert_eq!(meta.direction, Some(Direction::B2A));
    assert!(Translator::load(&runs, Direction::B2A, Device::Cpu).is_ok());

    // A whole model takes no direction: a clear error, and nothing written.
    let whole = tfport::run(root, &["forward", "--ch", "8", "--img", "96", "--adam"]);
    let refused = dir.path().join("refused");
    let out = run(&[
        "import-tf",
        "--input",
        s(&whole.join("checkpoint")),
        "--output",
        s(&refused),
        "--direction",
        "a2b",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("generators alone"), "{}", text(&out));
    assert!(!refused.join(brs_model::checkpoint::LATEST).exists());
}
