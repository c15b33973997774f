//! ONNX models brs exports, checked by `onnx.checker` and run by ONNX Runtime in the venv's
//! Python (`brs-model/tests/onnx_run.py`), for brs-model's and brs-train's export tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tch::Tensor;

/// What the script found: every output by name, and `info.json` (opset, dims, metadata, ops,
/// external data files, the batch-of-one difference).
#[derive(Debug)]
pub struct OnnxRun {
    pub outputs: BTreeMap<String, Tensor>,
    pub info: serde_json::Value,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../brs-model/tests/onnx_run.py")
}

/// Checks `model` and runs it on `input` (float32 NCHW), with its files in `work`.
pub fn check_and_run(model: &Path, input: &Tensor, work: &Path) -> OnnxRun {
    std::fs::create_dir_all(work).unwrap();
    let input_path = work.join("input.npy");
    input.write_npy(&input_path).unwrap();
    let python = crate::setup::python();
    let out = Command::new(&python)
        .arg(script())
        .arg(model)
        .arg(&input_path)
        .arg(work)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "onnx_run.py on {} failed (onnx and onnxruntime come from scripts/setup):\n{}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("info.json")).unwrap()).unwrap();
    let outputs = info["outputs"]
        .as_object()
        .unwrap()
        .keys()
        .map(|name| {
            let t = Tensor::read_npy(work.join(format!("{name}.npy"))).unwrap();
            (name.clone(), t)
        })
        .collect();
    OnnxRun { outputs, info }
}

/// The largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a - b).abs().max().double_value(&[])
}
