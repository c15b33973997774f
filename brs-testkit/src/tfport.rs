//! What brs-model's `tests/tf_ugatit.py` (our TensorFlow port of the authors' U-GAT-IT graph)
//! writes: runs of it, cached between test runs, its float32 arrays, and copies of its
//! checkpoints to damage.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tch::Tensor;

use crate::setup::cached_python_output;

/// `tf_ugatit.py ARGS --out DIR`, run once per set of arguments and kept under `root` (a test's
/// `CARGO_TARGET_TMPDIR`, the workspace's `target/tmp`, so every crate's tests share runs).
pub fn run(root: &Path, args: &[&str]) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../brs-model/tests/tf_ugatit.py");
    let mut all = args.to_vec();
    all.push("--out");
    cached_python_output(root, &script, &all)
}

/// A float32 array the port wrote, described by `entry` (`{"file", "shape"}`); NHWC images come
/// back NCHW.
pub fn array(dir: &Path, entry: &Value) -> Tensor {
    let shape: Vec<i64> = entry["shape"]
        .as_array()
        .unwrap_or_else(|| panic!("no array shape in {entry}"))
        .iter()
        .map(|d| d.as_i64().unwrap())
        .collect();
    let bytes = std::fs::read(dir.join(entry["file"].as_str().unwrap())).unwrap();
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let t = Tensor::from_slice(&values).reshape(&shape);
    if shape.len() == 4 {
        t.permute([0, 3, 1, 2]).contiguous()
    } else {
        t
    }
}

/// Copies the files of the TensorFlow checkpoint `prefix` (`PREFIX.index`, its shards...) into a
/// fresh directory, to damage them there; returns the directory and the copy's prefix.
pub fn copy_checkpoint(prefix: &Path) -> (tempfile::TempDir, PathBuf) {
    let tmp = crate::tempdir("brs-tf-checkpoint-");
    let name = prefix.file_name().unwrap().to_str().unwrap().to_owned();
    for item in std::fs::read_dir(prefix.parent().unwrap()).unwrap() {
        let item = item.unwrap();
        let file = item.file_name().into_string().unwrap();
        if file.starts_with(&format!("{name}.")) {
            std::fs::copy(item.path(), tmp.path().join(&file)).unwrap();
        }
    }
    let dst = tmp.path().join(name);
    (tmp, dst)
}
