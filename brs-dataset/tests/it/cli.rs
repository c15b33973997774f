//! The brs-dataset binary end to end: crop (deterministic, resumable), preview, split, synth, and
//! the setup error when ONNX Runtime cannot be found.

use std::path::Path;

use brs_testkit::setup::{fixture, setup_path};

use crate::helpers::{bin, tempdir};

fn photos(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::copy(fixture("astronaut.png"), dir.join("astronaut.png")).expect("copy");
    std::fs::copy(
        fixture("grace_hopper.jpg"),
        dir.join("sub/grace_hopper.jpg"),
    )
    .expect("copy");
    std::fs::copy(fixture("coffee.png"), dir.join("coffee.png")).expect("copy");
}

fn crop(input: &Path, output: &Path, extra: &[&str]) -> serde_json::Value {
    let out = bin()
        .args(["crop", "--quiet", "--input"])
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("summary on stdout")
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn crop_is_deterministic_and_resumable() {
    let dir = tempdir();
    let input = dir.path().join("photos");
    photos(&input);
    let out1 = dir.path().join("one");
    let s = crop(&input, &out1, &["--threads", "1"]);
    assert_eq!(
        (
            s["inputs"].as_u64(),
            s["ok"].as_u64(),
            s["skipped"].as_u64()
        ),
        (Some(3), Some(2), Some(1)),
        "{s}"
    );
    assert_eq!(s["skip_reasons"]["no_face"], 1);
    let crops = listing(&out1);
    assert_eq!(crops.len(), 2);
    for (name, png) in &crops {
        let img = image::load_from_memory(png).expect("png");
        assert_eq!((img.width(), img.height()), (256, 256), "{name}");
    }
    // The manifest has one record per input with box, landmarks, score and the checks.
    let manifest = std::fs::read_to_string(out1.join("manifest.jsonl")).expect("manifest");
    let recs: Vec<serde_json::Value> = manifest
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let sources: Vec<&str> = recs
        .iter()
        .map(|r| r["source"].as_str().expect("source"))
        .collect();
    assert_eq!(
        sources,
        ["astronaut.png", "coffee.png", "sub/grace_hopper.jpg"]
    );
    let face = &recs[0]["faces"][0];
    assert_eq!(face["landmarks"].as_array().map(Vec::len), Some(5));
    assert_eq!(face["checks"]["unique"], true);
    assert!(face["score"].as_f64().expect("score") > 0.8);

    // Same settings, two threads, another folder: byte-identical crops and manifest.
    let out2 = dir.path().join("two");
    crop(&input, &out2, &["--threads", "2"]);
    assert_eq!(listing(&out2), crops);
    assert_eq!(
        std::fs::read_to_string(out2.join("manifest.jsonl")).expect("manifest"),
        manifest
    );

    // A second run skips everything and counts it; changed settings redo the work.
    let again = crop(&input, &out1, &[]);
    assert_eq!(
        (again["already_done"].as_u64(), again["processed"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(again["crops_written"], 2);
    let bigger = crop(
        &input,
        &out1,
        &[
            "--size",
            "128",
            "--pad",
            "#ff00ff",
            "--margin",
            "0.5,0.2,0.2",
        ],
    );
    assert_eq!(bigger["processed"], 3);

    // A minimum face size larger than both faces: counted as too_small, nothing written.
    let strict = crop(&input, &dir.path().join("strict"), &["--min-face", "400"]);
    assert_eq!(strict["skip_reasons"]["too_small"], 2, "{strict}");
    assert_eq!(strict["crops_written"], 0);
}

#[test]
fn preview_split_and_synth() {
    let dir = tempdir();
    let input = dir.path().join("photos");
    photos(&input);
    let sheet = dir.path().join("sheet.png");
    let out = bin()
        .args(["preview", "--thumb", "128", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&sheet)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (s["images"].as_u64(), s["faces"].as_u64()),
        (Some(3), Some(2))
    );
    let img = image::open(&sheet).expect("sheet").to_rgb8();
    assert_eq!(img.dimensions(), (256, 256));
    // Green face boxes are drawn on the astronaut tile (top left).
    let green = (0..128)
        .flat_map(|x| (0..128).map(move |y| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0 == [0, 220, 0])
        .count();
    assert!(green > 50, "{green} green pixels");

    let data = dir.path().join("synth");
    let out = bin()
        .args([
            "synth",
            "--count",
            "6",
            "--test-count",
            "2",
            "--size",
            "32",
            "--output",
        ])
        .arg(&data)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (sub, n) in [("trainA", 6), ("trainB", 6), ("testA", 2), ("testB", 2)] {
        assert_eq!(
            std::fs::read_dir(data.join(sub)).expect("dir").count(),
            n,
            "{sub}"
        );
    }
    let a = image::open(data.join("testA/000006.png"))
        .expect("png")
        .to_rgb8();
    assert_eq!(a, brs_dataset::synth::scene(6, 0, 32));

    let out = bin()
        .args([
            "split",
            "--domain",
            "B",
            "--test-fraction",
            "0.5",
            "--input",
        ])
        .arg(data.join("trainA"))
        .arg("--output")
        .arg(dir.path().join("split"))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("split/testB"))
            .expect("dir")
            .count(),
        3
    );
}

/// `brs-dataset synth ... | head -0`: the data is written and the command ends quietly with exit 0
/// although nobody reads its summary (it panicked in `println!` before).
#[test]
fn a_reader_that_closes_stdout_early_is_not_a_crash() {
    let dir = tempdir();
    let data = dir.path().join("synth");
    let out = brs_testkit::output_into_closed_pipe(
        bin()
            .args([
                "synth",
                "--count",
                "2",
                "--test-count",
                "1",
                "--size",
                "32",
                "--output",
            ])
            .arg(&data),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(data.join("trainB")).expect("dir").count(),
        2
    );
}

#[test]
fn setup_errors_exit_2_with_a_fix() {
    let dir = tempdir();
    let input = dir.path().join("photos");
    photos(&input);
    let out = bin()
        .env(
            "ORT_DYLIB_PATH",
            dir.path().join("missing/libonnxruntime.so"),
        )
        .args(["crop", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("o"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scripts/setup") && err.contains("ORT_DYLIB_PATH"),
        "{err}"
    );
    // An explicit --onnxruntime wins over the environment.
    let ok = bin()
        .env("ORT_DYLIB_PATH", "/nonexistent")
        .args(["crop", "--quiet", "--onnxruntime"])
        .arg(setup_path("BRS_ORT_DYLIB"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("o"))
        .output()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = bin()
        .args(["crop", "--margin", "1,2", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("o3"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--margin"));
}
