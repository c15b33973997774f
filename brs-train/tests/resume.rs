//! Resume is exact: N + M iterations straight equal N iterations, a stop, a resume and M more
//! (weights, spectral-norm vectors and Adam moments), on the CPU with a fixed seed.
//!
//! One test in this binary on purpose: torch's global RNG seeds the initial weights, and a
//! second test building networks in parallel would interleave its draws.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::AtomicBool;

use brs_model::NetworkKind;
use brs_model::checkpoint::{CKPT_PREFIX, Checkpoint, OPTIM_FILE, RNG_FILE, checkpoint_name};
use brs_train::{EarlyStop, Quiet, TrainConfig, TrainOptions, train};
use common::{TINY, synth_dataset};

fn max_diff(a: &Checkpoint, b: &Checkpoint, file: &str) -> f64 {
    let ta = a.read_tensors(file).unwrap();
    let tb = b.read_tensors(file).unwrap();
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "{file}"
    );
    ta.iter()
        .map(|(k, x)| {
            let y = &tb[k];
            (x.to_kind(tch::Kind::Double) - y.to_kind(tch::Kind::Double))
                .abs()
                .max()
                .double_value(&[])
        })
        .fold(0.0, f64::max)
}

#[test]
fn stop_and_resume_equals_a_straight_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // 3 images per domain in batches of 2: the stop falls mid-epoch, after a partial batch.
    synth_dataset(&data, 3, 2, 96, 3);
    let (n, m) = (4u64, 3u64);
    // decay_flag with 7 iterations: the learning rate decays from iteration 4 on, across the stop.
    let config = TrainConfig::from_toml(
        &format!(
            "{TINY}iteration = {}\nbatch_size = 2\nprint_freq = 3\nsave_freq = 100\nseed = 9\n",
            n + m
        ),
        &[],
    )
    .unwrap();
    let opts = |out: &str, resume: bool, stop_at: Option<u64>| TrainOptions {
        config: config.clone(),
        data: Some(data.clone()),
        out: Some(dir.path().join(out)),
        resume,
        stop_at,
        max_minutes: None,
    };
    let never = AtomicBool::new(false);

    let straight = train(&opts("straight", false, None), &never, &mut Quiet).unwrap();
    assert_eq!((straight.iteration, straight.early_stop), (n + m, None));

    let first = train(&opts("split", false, Some(n)), &never, &mut Quiet).unwrap();
    assert_eq!(
        (first.iteration, first.early_stop),
        (n, Some(EarlyStop::StopAt))
    );
    // Without --resume an existing run is refused rather than overwritten.
    let err = train(&opts("split", false, None), &never, &mut Quiet)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    let second = train(&opts("split", true, None), &never, &mut Quiet).unwrap();
    assert_eq!((second.iteration, second.ran), (n + m, m));

    let a = Checkpoint::open(&dir.path().join("straight")).unwrap();
    let b = Checkpoint::open(&dir.path().join("split")).unwrap();
    assert_eq!((a.meta.iteration, b.meta.iteration), (n + m, n + m));
    let mut files: Vec<String> = NetworkKind::ALL.iter().map(|k| k.file_name()).collect();
    files.push(OPTIM_FILE.into());
    for file in &files {
        let diff = max_diff(&a, &b, file);
        assert!(
            diff <= 1e-6,
            "{file}: straight and resumed differ by {diff}"
        );
    }
    assert_eq!(
        a.read_file(RNG_FILE).unwrap(),
        b.read_file(RNG_FILE).unwrap()
    );

    // The weights did move: a resume that silently restarted would not match anyway, but a run
    // that never trained would match trivially.
    let start = dir
        .path()
        .join("split")
        .join(checkpoint_name(CKPT_PREFIX, n));
    let mid = Checkpoint::open(&start).unwrap();
    let moved = max_diff(&mid, &b, "genA2B.safetensors");
    assert!(
        moved > 1e-6,
        "weights did not change between iterations {n} and {}",
        n + m
    );

    // metrics.jsonl of the split run holds each iteration once, like the straight run's.
    let lines = |run: &str| {
        std::fs::read_to_string(dir.path().join(run).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["iteration"].as_u64())
            .collect::<Vec<_>>()
    };
    assert_eq!(lines("straight"), lines("split"));
}
