//! Paths scripts/setup records in .cargo/config.toml's `[env]`: fixtures, the CenterFace model,
//! ONNX Runtime, the venv's Python. A missing one fails the test with a message naming setup
//! (CI always runs it first), never a silent pass.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The path in env var `var`, which must exist.
pub fn setup_path(var: &str) -> PathBuf {
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

/// A photo fixture taken from installed packages at setup (astronaut.png, grace_hopper.jpg, ...).
pub fn fixture(name: &str) -> PathBuf {
    let p = setup_path("BRS_FIXTURES").join(name);
    assert!(
        p.is_file(),
        "fixture {} missing: run scripts/setup",
        p.display()
    );
    p
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("read fixture")
}

pub fn centerface_model() -> PathBuf {
    setup_path("BRS_CENTERFACE_MODEL")
}

/// The venv's Python (torch, onnx, moto...).
pub fn python() -> PathBuf {
    setup_path("BRS_PYTHON")
}

/// Loads ONNX Runtime from the path setup recorded.
pub fn init_ort() {
    let lib = setup_path("BRS_ORT_DYLIB");
    brs_image::detect::init_onnxruntime(Some(&lib)).unwrap_or_else(|e| panic!("ONNX Runtime: {e}"));
}

/// Runs scripts/make_yolo_models.py, writing small YOLO-layout ONNX models into `dir`.
pub fn make_yolo_models(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make_yolo_models.py");
    let python = python();
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

/// Runs `python SCRIPT ARGS... OUT_DIR` once and returns OUT_DIR, kept under `root` (a test's
/// `CARGO_TARGET_TMPDIR`) by the script's and the arguments' hash, so the next test run reuses
/// it: TensorFlow takes tens of seconds to start on a busy machine. Tests in other processes
/// that race for the same output each write their own and keep whichever is renamed first.
pub fn cached_python_output(root: &Path, script: &Path, args: &[&str]) -> PathBuf {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    std::fs::read(script)
        .unwrap_or_else(|e| panic!("reading {}: {e}", script.display()))
        .hash(&mut hasher);
    args.hash(&mut hasher);
    let stem = script
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("python");
    let dir = root.join(format!("{stem}-{:016x}", hasher.finish()));
    let done = dir.join(".done");
    if done.is_file() {
        return dir;
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{stem}-new-"))
        .tempdir_in(root)
        .unwrap_or_else(|e| panic!("a temp dir in {}: {e}", root.display()));
    let python = python();
    let out = Command::new(&python)
        .arg(script)
        .args(args)
        .arg(tmp.path())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed (its packages come from scripts/setup):\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(tmp.path().join(".done"), b"").expect("mark the output complete");
    let made = tmp.keep();
    if std::fs::rename(&made, &dir).is_err() {
        // Another process finished first: its copy is as good.
        let _ = std::fs::remove_dir_all(&made);
    }
    dir
}
