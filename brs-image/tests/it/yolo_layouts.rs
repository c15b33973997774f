//! YOLO layouts with tiny ONNX models built by scripts/make_yolo_models.py: each returns known
//! boxes in 640x640 letterboxed input pixels; we check decoding, NMS, thresholds and the exact
//! mapping back to the original image.

use std::path::Path;

use brs_image::detect::yolo::{Layout, Yolo, YoloOptions};
use brs_image::detect::{Detector, DetectorKind, DetectorSpec, Face, load_detector};
use image::{Rgb, RgbImage};

use brs_testkit::setup::{init_ort, make_yolo_models};

// A 320x160 photo letterboxed into 640x640: scale 2, no left pad, 160 px on top.
fn landscape() -> RgbImage {
    RgbImage::from_pixel(320, 160, Rgb([90, 120, 150]))
}

const FACE0: [f32; 4] = [80.0, 45.0, 120.0, 95.0];
const FACE2: [f32; 4] = [225.0, 105.0, 255.0, 135.0];
const LANDMARKS0: [[f32; 2]; 5] = [
    [90.0, 60.0],
    [110.0, 60.0],
    [100.0, 70.0],
    [92.5, 80.0],
    [107.5, 80.0],
];

fn run(dir: &Path, name: &str, opts: YoloOptions, img: &RgbImage) -> Vec<Face> {
    let mut y = Yolo::load(&dir.join(format!("{name}.onnx")), opts).expect("load model");
    y.detect(img).expect("detect")
}

fn boxes(f: &[Face]) -> Vec<[f32; 4]> {
    f.iter().map(|f| f.bbox).collect()
}

#[test]
fn every_layout_decodes_suppresses_and_maps_back_exactly() {
    init_ort();
    let dir = brs_testkit::tempdir("brs-image-test-");
    make_yolo_models(dir.path());
    let img = landscape();
    let opts = YoloOptions::default();

    for name in ["v5face", "v8pose"] {
        let faces = run(dir.path(), name, opts, &img);
        // The duplicate (0.8) is suppressed, 0.1 and 0.9*0.2 are under the threshold.
        assert_eq!(boxes(&faces), vec![FACE0, FACE2], "{name}");
        assert_eq!(faces[0].score, 0.9, "{name}");
        assert_eq!(faces[0].landmarks, LANDMARKS0.to_vec(), "{name}");
        // Landmarks of the second kept box were shifted by its row index (2) in input pixels.
        assert_eq!(faces[1].landmarks[0], [91.0, 61.0], "{name}");
    }

    let faces = run(dir.path(), "v8", opts, &img);
    assert_eq!(boxes(&faces), vec![FACE0, FACE2]);
    assert!(faces[0].landmarks.is_empty());
    // Only class 1: the box NMS removed above is now the only one.
    let faces = run(
        dir.path(),
        "v8",
        YoloOptions {
            class_id: Some(1),
            ..opts
        },
        &img,
    );
    assert_eq!(boxes(&faces), vec![[82.0, 46.0, 122.0, 96.0]]);
    assert_eq!(faces[0].score, 0.8);

    let faces = run(dir.path(), "e2e", opts, &img);
    assert_eq!(boxes(&faces), vec![FACE0, FACE2]);
    assert_eq!(
        faces.iter().map(|f| f.score).collect::<Vec<_>>(),
        vec![0.9, 0.7]
    );

    // A portrait photo is padded left and right instead: 160x320 -> scale 2, 160 px on the left.
    let portrait = RgbImage::from_pixel(160, 320, Rgb([0, 0, 0]));
    let faces = run(dir.path(), "v8", opts, &portrait);
    assert_eq!(
        boxes(&faces),
        vec![[0.0, 125.0, 40.0, 175.0], [145.0, 185.0, 175.0, 215.0]]
    );

    // A higher threshold keeps only the best face; forcing a wrong layout is reported, not a panic.
    let faces = run(
        dir.path(),
        "v5face",
        YoloOptions {
            conf_threshold: 0.85,
            ..opts
        },
        &img,
    );
    assert_eq!(boxes(&faces), vec![FACE0]);
    let mut wrong = Yolo::load(
        &dir.path().join("e2e.onnx"),
        YoloOptions {
            layout: Some(Layout::V8pose),
            ..opts
        },
    )
    .expect("load");
    assert!(wrong.detect(&img).is_err());
}

#[test]
fn load_detector_builds_yolo_from_a_spec() {
    init_ort();
    let dir = brs_testkit::tempdir("brs-image-test-");
    make_yolo_models(dir.path());
    let spec: DetectorSpec = serde_json::from_value(serde_json::json!({
        "kind": "yolo", "model": dir.path().join("v8pose.onnx"), "conf_threshold": 0.5
    }))
    .expect("spec");
    assert_eq!(spec.kind, DetectorKind::Yolo);
    let mut det = load_detector(&spec).expect("load");
    assert_eq!(
        boxes(&det.detect(&landscape()).expect("detect")),
        vec![FACE0, FACE2]
    );
    // A YOLO spec without a model, or with a missing file, is a clear error.
    let err = load_detector(&DetectorSpec {
        kind: DetectorKind::Yolo,
        ..DetectorSpec::default()
    })
    .err()
    .expect("error");
    assert!(err.to_string().contains("--model"), "{err}");
    let err = load_detector(&DetectorSpec {
        kind: DetectorKind::Yolo,
        model: Some(dir.path().join("nope.onnx")),
        ..DetectorSpec::default()
    })
    .err()
    .expect("error");
    assert!(err.to_string().contains("nope.onnx"), "{err}");
    let bad =
        serde_json::from_value::<DetectorSpec>(serde_json::json!({"kind": "yolo", "typo": 1}));
    assert!(bad.is_err(), "unknown fields are refused");
}
