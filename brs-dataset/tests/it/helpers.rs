//! Shared test helpers: where scripts/setup put things (failing loudly when it did not run), temp
//! dirs, and running the Python that builds small ONNX models.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A path from an env var scripts/setup writes into .cargo/config.toml; a missing var or file is a
/// test failure telling the reader to run setup (CI always runs it first), never a silent pass.
pub(crate) fn setup_path(var: &str) -> PathBuf {
    let value = std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set: run scripts/setup (it writes .cargo/config.toml), then run the tests with cargo")
    });
    let path = PathBuf::from(value);
    assert!(
        path.exists(),
        "{var}={} does not exist: run scripts/setup",
        path.display()
    );
    path
}

pub(crate) fn fixture(name: &str) -> PathBuf {
    let p = setup_path("BRS_FIXTURES").join(name);
    assert!(
        p.is_file(),
        "fixture {} missing: run scripts/setup",
        p.display()
    );
    p
}

pub(crate) fn centerface_model() -> PathBuf {
    setup_path("BRS_CENTERFACE_MODEL")
}

/// Loads ONNX Runtime from the path setup recorded (also checks the env var is there).
pub(crate) fn init_ort() {
    let lib = setup_path("BRS_ORT_DYLIB");
    brs_dataset::detect::init_onnxruntime(Some(&lib))
        .unwrap_or_else(|e| panic!("ONNX Runtime: {e}"));
}

pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("brs-dataset-test-")
        .tempdir()
        .expect("temp dir")
}

/// Runs scripts/make_yolo_models.py with BRS_PYTHON, writing the layout models into `dir`.
pub(crate) fn make_yolo_models(dir: &Path) {
    let python = setup_path("BRS_PYTHON");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make_yolo_models.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "make_yolo_models.py failed (run scripts/setup?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    brs_dataset::detect::iou(&a, &b)
}

/// The brs-dataset binary cargo built for these tests.
pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brs-dataset"))
}

pub(crate) fn encode(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encode test image");
    out
}
