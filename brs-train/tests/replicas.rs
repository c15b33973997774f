//! Data parallelism trains the same model: with `replicas = 2` every iteration's losses and the
//! final weights match a run without replicas up to float rounding, through the whole trainer
//! (loader, epochs ending on partial batches, checkpoints). The gradients themselves are compared
//! in step.rs's unit test.
//!
//! One test in this binary on purpose: torch's global RNG seeds the initial weights, and a
//! second test building networks in parallel would interleave its draws.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::AtomicBool;

use brs_model::NetworkKind;
use brs_model::checkpoint::Checkpoint;
use brs_train::{Quiet, TrainConfig, TrainOptions, train};
use common::{TINY, synth_dataset};

/// Every logged iteration's losses of the run in `dir`, in order.
fn losses(dir: &std::path::Path) -> Vec<(u64, Vec<f64>)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let keys = ["d_loss", "g_adv", "g_cycle", "g_identity", "g_cam"];
            let values = keys.iter().map(|k| v[*k].as_f64().unwrap()).collect();
            (v["iteration"].as_u64().unwrap(), values)
        })
        .collect()
}

/// Mean absolute difference between the same tensors of two checkpoints.
fn mean_diff(a: &Checkpoint, b: &Checkpoint, file: &str) -> f64 {
    let (ta, tb) = (a.read_tensors(file).unwrap(), b.read_tensors(file).unwrap());
    let (mut sum, mut count) = (0.0, 0i64);
    for (k, x) in &ta {
        let d = (x.to_kind(tch::Kind::Double) - tb[k].to_kind(tch::Kind::Double)).abs();
        sum += d.sum(tch::Kind::Double).double_value(&[]);
        count += d.numel() as i64;
    }
    sum / count as f64
}

#[test]
fn two_replicas_train_what_one_trains() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // 5 A images and 4 B in batches of 3: A batches of 3, 2, 3, 2 (split 2 + 1 and 1 + 1), B
    // batches of 3, 1, 3, 1 (the batches of 1 leave the replica idle).
    synth_dataset(&data, 5, 2, 96, 3);
    std::fs::remove_file(data.join("trainB/0004.png")).unwrap();
    let run = |out: &str, replicas: usize| {
        let config = TrainConfig::from_toml(
            &format!(
                "{TINY}iteration = 4\nbatch_size = 3\nlr = 1e-3\nprint_freq = 100\n\
                 save_freq = 100\nseed = 5\nreplicas = {replicas}\n"
            ),
            &[],
        )
        .unwrap();
        let opts = TrainOptions {
            config,
            data: Some(data.clone()),
            out: Some(dir.path().join(out)),
            resume: false,
            stop_at: None,
            max_minutes: None,
        };
        let summary = train(&opts, &AtomicBool::new(false), &mut Quiet).unwrap();
        assert_eq!(summary.iteration, 4);
        dir.path().join(out)
    };
    let one = run("one", 1);
    let two = run("two", 2);

    let (l1, l2) = (losses(&one), losses(&two));
    assert_eq!(l1.len(), 4);
    assert_eq!(
        l1.iter().map(|l| l.0).collect::<Vec<_>>(),
        l2.iter().map(|l| l.0).collect::<Vec<_>>()
    );
    for ((it, a), (_, b)) in l1.iter().zip(&l2) {
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-4 * x.abs().max(1e-3),
                "iteration {it}: losses {a:?} with one copy, {b:?} with two"
            );
        }
    }

    // Weights: Adam's early steps are about lr * sign(gradient), so rounding may flip a few
    // near-zero gradients; on average the two runs must agree far better than either moved.
    let a = Checkpoint::open(&one).unwrap();
    let b = Checkpoint::open(&two).unwrap();
    for kind in NetworkKind::ALL {
        let file = kind.file_name();
        let diff = mean_diff(&a, &b, &file);
        assert!(
            diff < 1e-5,
            "{file}: one and two copies differ by {diff} on average"
        );
    }
}
