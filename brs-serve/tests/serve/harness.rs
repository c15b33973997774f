//! locust/run end to end (a few seconds of load on loopback): the summary JSON other scripts read
//! has its keys and sane values, and the chart is written.

use std::path::Path;
use std::process::Command;

use crate::common::{publish, tiny_config};

#[test]
fn locust_run_writes_summary_and_chart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var("BRS_PYTHON")
        .unwrap_or_else(|_| root.join(".venv/bin/python").to_string_lossy().into_owned());
    assert!(
        Path::new(&python).is_file(),
        "no python at {python}: run scripts/setup (it installs locust)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    publish(&run, &tiny_config(), 1, 1);
    let out = dir.path().join("out");
    let status = Command::new(root.join("locust/run"))
        .args(["--bin", env!("CARGO_BIN_EXE_brs-serve")])
        .args(["--model-dir", run.to_str().expect("utf8")])
        .args(["--users", "2", "--spawn-rate", "2", "--time", "4s"])
        .args(["--out", out.to_str().expect("utf8")])
        .env("BRS_PYTHON", &python)
        .env("BRS_LOCUST_MIX", "raw=2,multipart=1,jobs=1")
        .status()
        .expect("run locust/run");
    assert!(status.success(), "locust/run failed: {status}");
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary.json");
    let s: serde_json::Value = serde_json::from_str(&text).expect("json");
    for k in [
        "requests_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "failures_by_status",
        "backpressure_503",
    ] {
        assert!(!s[k].is_null(), "summary lacks {k}: {text}");
    }
    assert!(s["requests_per_s"].as_f64().expect("rps") > 1.0, "{text}");
    assert_eq!(s["failures_by_status"], serde_json::json!({}), "{text}");
    assert!(
        s["by_name"]["/v1/jobs"]["requests"]
            .as_u64()
            .expect("jobs ran")
            >= 1,
        "{text}"
    );
    let png = std::fs::read(out.join("chart.png")).expect("chart");
    assert!(png.starts_with(b"\x89PNG"));
}
