//! `brs-train translate --engine`: ONNX Runtime writes the PNGs libtorch writes, within one grey
//! level; `auto` says what it chose and both times; an unknown engine is refused by name.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{run, s, text};

fn translate(model: &Path, input: &Path, out: &Path, engine: &str) -> String {
    let o = run(&[
        "translate",
        "--checkpoint",
        s(model),
        "--input",
        s(input),
        "--output",
        s(out),
        "--device",
        "cpu",
        "--precision",
        "f32",
        "--batch",
        "2",
        "--engine",
        engine,
    ]);
    assert!(o.status.success(), "--engine {engine}: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("translated 3 images"),
        "{}",
        text(&o)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn onnx_runtime_writes_the_pngs_libtorch_writes() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let cfg = brs_model::ModelConfig {
        ch: 8,
        n_res: 2,
        ..brs_testkit::model::tiny_config()
    };
    brs_testkit::model::publish(&model, &cfg, 3, 1);
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // Three images: an odd batch, of other sizes than the model's.
    for (k, side) in [(0u8, 96u32), (1, 150), (2, 64)] {
        let img = image::RgbImage::from_fn(side, side * 3 / 4, |x, y| {
            image::Rgb([(x * 3) as u8 ^ k, (y * 2) as u8, ((x + y) % 256) as u8])
        });
        img.save(input.join(format!("p{k}.png"))).unwrap();
    }
    let (torch, onnx, auto) = (
        dir.path().join("torch"),
        dir.path().join("onnx"),
        dir.path().join("auto"),
    );
    assert!(translate(&model, &input, &torch, "torch").contains("engine: torch f32"));
    assert!(translate(&model, &input, &onnx, "onnx").contains("engine: onnx f32"));
    let said = translate(&model, &input, &auto, "auto");
    assert!(
        said.contains("torch f32") && said.contains("onnx f32") && said.contains(" ms"),
        "auto names both times: {said}"
    );
    for k in 0..3 {
        let name = format!("p{k}.png");
        let a = image::open(torch.join(&name)).unwrap().to_rgb8();
        for other in [&onnx, &auto] {
            let b = image::open(other.join(&name)).unwrap().to_rgb8();
            assert_eq!(a.dimensions(), (96, 96));
            let d = a
                .as_raw()
                .iter()
                .zip(b.as_raw())
                .map(|(x, y)| x.abs_diff(*y))
                .max()
                .unwrap();
            assert!(d <= 1, "{name} in {}: {d} grey levels", other.display());
        }
    }
}

#[test]
fn an_unknown_or_impossible_engine_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let args = |engine: &'static str, precision: &'static str| {
        run(&[
            "translate",
            "--checkpoint",
            s(dir.path()),
            "--input",
            s(dir.path()),
            "--output",
            s(dir.path()),
            "--engine",
            engine,
            "--precision",
            precision,
        ])
    };
    let out = args("tensorrt", "auto");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("tensorrt") && err.contains("onnx"),
        "{err}"
    );
    let out = args("onnx", "bf16");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("float32"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
