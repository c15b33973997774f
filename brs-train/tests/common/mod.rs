//! Helpers shared by the whole-binary tests: synthetic datasets, configs, running the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
