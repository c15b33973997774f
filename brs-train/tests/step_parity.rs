//! Training exactly as the reference: the official U-GAT-IT iteration (UGATIT.py's D step, G step
//! and rho clipping, run by PyTorch itself through scripts/ugatit_torch.py) and ours, from the same
//! weights on the same batches, must end with the same weights, spectral-norm vectors and losses.
//!
//! Ours batches the generator calls, reuses the D step's fakes and skips gradients the reference
//! discards: this test is what shows those savings change nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use brs_model::{import, tensors};
use brs_train::{TrainConfig, TrainOptions, Trainer};
use common::{assert_trained_like, config, synth_dataset};

const LR: f64 = 1e-4;

fn reference(dir: &Path, img: i64, ch: i64, light: bool, batch: i64, steps: i64) {
    let python = std::env::var("BRS_PYTHON")
        .expect("BRS_PYTHON is unset: run scripts/setup (it writes .cargo/config.toml)");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/make_step_reference.py");
    let status = Command::new(python)
        .arg(script)
        .arg(dir)
        .args([img, ch, 1, light as i64, batch, steps, 11].map(|v| v.to_string()))
        .status()
        .expect("running python");
    assert!(status.success(), "make_step_reference.py failed");
}

/// `flip_budget`: the fraction of a layer's weights allowed to differ by more than lr/10.
fn check(img: i64, ch: i64, light: bool, batch: i64, steps: i64, flip_budget: f64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    reference(dir, img, ch, light, batch, steps);
    let before = dir.join("before");
    let after = dir.join("after");
    import::import_pytorch(&dir.join("parity_params_0000000.pt"), &before, img).unwrap();
    import::import_pytorch(
        &dir.join(format!("parity_params_{steps:07}.pt")),
        &after,
        img,
    )
    .unwrap();

    // The trainer resumes from the imported weights (fresh Adam moments, as the reference starts).
    synth_dataset(&dir.join("data"), 1, 1, img as u32, 0);
    let body = format!(
        "img_size = {img}\nch = {ch}\nn_res = 1\nlight = {light}\nbatch_size = {batch}\n\
         lr = {LR}\ndecay_flag = false\niteration = 100\ndevice = \"cpu\"\nthreads = 1\n"
    );
    let cfg = TrainConfig::load(&config(dir, "parity.toml", &body), &[]).unwrap();
    let opts = TrainOptions {
        config: cfg,
        data: Some(dir.join("data")),
        out: Some(before.clone()),
        resume: true,
        stop_at: None,
        max_minutes: None,
    };
    let mut trainer = Trainer::new(&opts).unwrap();
    let inputs =
        tensors::from_safetensors(&std::fs::read(dir.join("inputs.safetensors")).unwrap()).unwrap();
    let theirs_losses: Vec<[f64; 2]> =
        serde_json::from_slice(&std::fs::read(dir.join("losses.json")).unwrap()).unwrap();
    for (k, [d_loss, g_loss]) in theirs_losses.iter().enumerate() {
        let ours = trainer
            .step(
                &inputs[&format!("real_A.{k}")],
                &inputs[&format!("real_B.{k}")],
            )
            .unwrap();
        for (name, a, b) in [("D", ours.d_loss, *d_loss), ("G", ours.g_loss, *g_loss)] {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "iteration {k}: {name} loss ours {a} reference {b}"
            );
        }
    }

    assert_trained_like(trainer.networks(), &before, &after, LR, flip_budget);
}

#[test]
fn two_iterations_of_the_light_model_equal_the_official_code() {
    // The paper's batch of 1. The second Adam step's size depends on the ratio of two gradients,
    // so rounding shows a little there (seen: 0.09% of one layer's weights off by 0.07 lr).
    check(96, 4, true, 1, 2, 1e-3);
}

#[test]
fn two_iterations_of_the_full_model_equal_the_official_code() {
    check(96, 4, false, 1, 2, 1e-3);
}

#[test]
fn a_batched_iteration_equals_the_official_code_up_to_float_rounding() {
    // Batch 2: our generator calls hold 4 and 6 images where the reference's hold 2, so float32
    // sums run in another order. Adam's first step is lr * sign(gradient), and for gradients
    // within rounding of zero that sign is a coin toss: measured, 0.2-0.3% of the weights of a
    // few decoder layers flip, the same ones an exact float32 PyTorch replica of our batching
    // flips (in float64 that replica equals the official step to 1e-16). A wrong gradient moves
    // far more; the losses must agree as tightly as at batch 1.
    check(96, 4, true, 2, 1, 0.01);
}
