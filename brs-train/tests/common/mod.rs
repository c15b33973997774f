//! Helpers shared by the whole-binary tests: synthetic datasets, configs, running the binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use brs_model::Networks;
use brs_model::checkpoint::Checkpoint;
use tch::{Device, Kind, Tensor};

use brs_dataset::synth::{domain_b_seed, scene, to_domain_b};
use image::RgbImage;

/// The brs-train binary cargo built for these tests.
pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brs-train"))
}

/// Runs brs-train with `args`; returns its output (never panics on a failing exit code).
pub(crate) fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("spawning brs-train")
}

/// A path as the `&str` an argument list wants.
pub(crate) fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The arguments of `train --config CFG --data DATA --out OUT`, then `extra`.
pub(crate) fn train_args<'a>(
    cfg: &'a Path,
    data: &'a Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--config",
        s(cfg),
        "--data",
        s(data),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs `brs-train train` (see `train_args`).
pub(crate) fn train(cfg: &Path, data: &Path, out: &Path, extra: &[&str]) -> Output {
    run(&train_args(cfg, data, out, extra))
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn save(img: &RgbImage, path: &Path) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    img.save(path).expect("saving a PNG");
}

/// Unpaired synthetic domains in the reference layout: A = scenes of `seed`, B = the cartoon
/// mapping of scenes of another seed, tests from a third seed (held out).
pub(crate) fn synth_dataset(root: &Path, n_train: u64, n_test: u64, size: u32, seed: u64) {
    synth_dataset_mapped(root, n_train, n_test, size, seed, to_domain_b);
}

/// `synth_dataset` with another known mapping from A to B.
pub(crate) fn synth_dataset_mapped(
    root: &Path,
    n_train: u64,
    n_test: u64,
    size: u32,
    seed: u64,
    map: fn(&RgbImage) -> RgbImage,
) {
    for i in 0..n_train {
        save(
            &scene(i, seed, size),
            &root.join(format!("trainA/{i:04}.png")),
        );
        let b = map(&scene(i, domain_b_seed(seed), size));
        save(&b, &root.join(format!("trainB/{i:04}.png")));
    }
    let test_seed = held_out_seed(seed);
    for i in 0..n_test {
        let a = scene(i, test_seed, size);
        save(&a, &root.join(format!("testA/{i:04}.png")));
        save(&map(&a), &root.join(format!("testB/{i:04}.png")));
    }
}

/// The seed of the held-out test scenes of `synth_dataset(.., seed)`.
pub(crate) fn held_out_seed(seed: u64) -> u64 {
    seed.wrapping_add(1_000_003)
}

/// The smallest networks the model accepts: quick in a debug build. One libtorch thread: tests
/// run side by side, and OpenMP's two-thread barriers crawl on oversubscribed cores (measured:
/// 6.4 s/it instead of 0.3 s/it while the machine was busy).
pub(crate) const TINY: &str = "img_size = 96\nch = 4\nn_res = 1\nlight = true\ndevice = \"cpu\"\n\
sample_count = 2\nlog_freq = 1\nthreads = 1\n";

/// Writes `body` as a config file in `dir`.
pub(crate) fn config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("writing a config");
    path
}

/// Asserts that `ours`, trained from the checkpoint `before`, holds what the official code's
/// iterations saved in `after`: trainable weights within `lr / 10` of theirs on all but
/// `flip_budget` of each layer's elements (or one element), spectral norm's vectors within 1e-4. Not vacuous:
/// the reference must have moved nearly every weight.
#[allow(clippy::unwrap_used)]
pub(crate) fn assert_trained_like(
    ours: &Networks,
    before: &Path,
    after: &Path,
    lr: f64,
    flip_budget: f64,
) {
    let expect = Networks::new(&ours.config, Device::Cpu).unwrap();
    expect.load_from(&Checkpoint::open(after).unwrap()).unwrap();
    let start = Networks::new(&ours.config, Device::Cpu).unwrap();
    start.load_from(&Checkpoint::open(before).unwrap()).unwrap();
    let (mut compared, mut compared_trainable, mut trained) = (0, 0, 0);
    let mut failures = Vec::new();
    for ((kind, ours), (_, theirs)) in ours.stores().zip(expect.stores()) {
        let theirs: BTreeMap<String, Tensor> = theirs.variables().into_iter().collect();
        let initial: BTreeMap<String, Tensor> = start.store(kind).variables().into_iter().collect();
        for (name, ours) in ours.variables() {
            let label = format!("{}.{name}", kind.name());
            let (theirs, initial) = (&theirs[&name], &initial[&name]);
            let moved = (theirs - initial).abs().max().double_value(&[]);
            let diff = (&ours - theirs).abs();
            if ours.requires_grad() {
                compared_trainable += 1;
                // Adam moves every weight by about lr per step, whatever the gradient's size, so
                // a wrong gradient shows as differences of order lr on many elements.
                let off = diff.gt(0.1 * lr).to_kind(Kind::Float).mean(Kind::Float);
                let off = off.double_value(&[]);
                // One element may always flip: a small layer's budget would otherwise be none.
                if off > flip_budget.max(1.0 / diff.numel() as f64) {
                    failures.push(format!(
                        "{label}: {:.3}% of {} elements differ from the reference by more than \
                         lr/10 (max {:e}, the reference moved up to {moved:e})",
                        off * 100.0,
                        diff.numel(),
                        diff.max().double_value(&[])
                    ));
                }
                trained += usize::from(moved > 0.5 * lr);
            } else {
                // Spectral norm's u and v, refined by every training-mode discriminator call.
                let d = diff.max().double_value(&[]);
                if d >= 1e-4 {
                    failures.push(format!("{label}: max diff {d:e}"));
                }
            }
            compared += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Not vacuous: nearly every weight moved (ILN's rho starts at 0 and may be clipped back there).
    assert!(compared > 50, "only {compared} variables compared");
    assert!(
        trained * 10 > compared_trainable * 8,
        "the reference trained only {trained} of {compared_trainable} variables"
    );
}
