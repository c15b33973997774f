//! It learns: two synthetic unpaired domains whose true mapping is known (B is a warm colour grade
//! of other scenes), a short training run, and the translation error against the known mapping on
//! held-out images, before and after.
//!
//! Why the colour grade and not the cartoon filter (`to_domain_b`, which the demo uses): in the
//! minutes CI has, the error against the cartoon falls from 0.44 to 0.21 in 1500 iterations and
//! 0.20 in 2000 (measured), not far enough below half to pass reliably; its 4-level quantisation
//! and 1-pixel outlines take a model this small much longer. The grade shows the same thing (the
//! model reproduces held-out scenes through its bottleneck and applies a mapping it was never
//! shown in pairs) with a clear margin.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use brs_dataset::synth::{scene, warm};
use brs_model::{Direction, ModelConfig, Networks, Translator};
use brs_train::evaluate::{load_pairs, score};
use common::{config, held_out_seed, run, synth_dataset_mapped, text};
use tch::Device;

const SEED: u64 = 5;
const N_TEST: u64 = 8;

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

// Budget: about 2 minutes on 2 cores. Measured (2026-11-30, this test as it stands): untrained
// 0.375, trained 0.124 after 1000 iterations, identity map 0.270; 117 s. While tuning (1 thread,
// seed 5; runs are deterministic): 0.16 after 200 iterations, 0.14 after 600, 0.13-0.15 after 800.
// Tune with the BRS_LEARN_* variables (ITERS, LR, CH, NRES, BATCH, EXTRA: config lines separated
// by `;`).
#[test]
fn translation_error_falls_far_below_the_untrained_models() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let img = 96u32;
    // Training scenes at img + 30, the size the loader crops from, so no resize blurs them.
    synth_dataset_mapped(&data, 32, N_TEST, img + 30, SEED, warm);
    for i in 0..N_TEST {
        // The test folders hold held-out scenes at the model's size and their known mapping,
        // under the same names: what the model is scored on.
        let a = scene(i, held_out_seed(SEED), img);
        a.save(data.join(format!("testA/{i:04}.png"))).unwrap();
        warm(&a)
            .save(data.join(format!("testB/{i:04}.png")))
            .unwrap();
    }
    let iterations = env_or("BRS_LEARN_ITERS", "1000");
    let body = format!(
        "img_size = {img}\nch = {}\nn_res = {}\nlight = true\nbatch_size = {}\nlr = {}\n\
         iteration = {iterations}\nprint_freq = 100\nsave_freq = 100000\nlog_freq = 10\n\
         seed = {SEED}\ndevice = \"cpu\"\nsample_count = 4\n{}\n",
        env_or("BRS_LEARN_CH", "8"),
        env_or("BRS_LEARN_NRES", "1"),
        env_or("BRS_LEARN_BATCH", "1"),
        env_or("BRS_LEARN_LR", "5e-4"),
        env_or("BRS_LEARN_EXTRA", "cam_weight=10").replace(';', "\n"),
    );
    let cfg = config(dir.path(), "learn.toml", &body);
    let out_dir = dir.path().join("run");
    let out = run(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));

    // The untrained model: the trainer seeds torch with the config's seed before building.
    let trained = Translator::load(&out_dir, Direction::A2B, Device::Cpu).unwrap();
    tch::manual_seed(SEED as i64);
    let model: ModelConfig = trained.config().clone();
    let untrained = Networks::new(&model, Device::Cpu).unwrap();
    let pairs = load_pairs(&data.join("testA"), &data.join("testB"), img).unwrap();
    assert_eq!(pairs.names.len(), N_TEST as usize);
    let before = score(&pairs, 8, |x| Ok(untrained.gen_a2b.forward(x).image))
        .unwrap()
        .translation_error;
    let scored = score(&pairs, 8, |x| Ok(trained.translate(x)?)).unwrap();
    let after = scored.translation_error;
    // The identity map (output = input): what a model that only learned to copy would score.
    let identity = scored.identity_error;
    println!(
        "mean L1 to the known mapping on {N_TEST} held-out images: untrained {before:.4}, \
         trained {after:.4} after {iterations} iterations (identity map {identity:.4}); \
         {:.0} s in all\n{body}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        after < 0.5 * before,
        "translation error {after:.4} is not far below the untrained model's {before:.4}"
    );
    assert!(
        after < 0.75 * identity,
        "translation error {after:.4} is not clearly below the identity map's {identity:.4}: \
         the model copies its input rather than translating it"
    );
}
