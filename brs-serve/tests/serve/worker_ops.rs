//! `brs-serve worker`'s operations port (issue 24, item 7): with `worker.ops_bind` it answers
//! /healthz, /readyz and /metrics (with the counters of the job images it ran), 404 to anything
//! else, and tells a drain on /readyz until it exits; without the key it listens on nothing. The
//! workers run against S3 and SQS on moto, signing as terraform's worker role.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

use crate::common::aws::{AwsRole, LocalAws, spawn_worker};
use crate::common::{Server, client, free_port, get_json, png, tiny_config};

/// Submits a one-image job (its bytes unique to `n`, so it is translated, not found in the
/// dedup store) and waits until a worker has done it.
async fn one_image_job(api: &Server, n: u8) {
    let mut b = png(48, 48);
    b.push(n);
    let form = Form::new().part("image", Part::bytes(b).file_name("a.png"));
    let r = client()
        .post(api.url("/v1/jobs"))
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let job: serde_json::Value = r.json().await.expect("json");
    let id = job["id"].as_str().expect("id").to_string();
    let t = Instant::now();
    loop {
        let v = get_json(api.url(&format!("/v1/jobs/{id}"))).await;
        if v["status"] == "done" {
            assert_eq!(v["items"][0]["status"], "done", "{v}");
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "job not done: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The TCP ports process `pid` listens on: its socket descriptors found in LISTEN state in
/// /proc/net/tcp and tcp6 (Linux; this test's network namespace is the child's).
fn listening_ports(pid: u32) -> HashSet<u16> {
    let sockets: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the worker's descriptors")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st ... inode: "0A" is LISTEN, field 9 the inode.
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && sockets.contains(f[9]) {
                let port = f[1].rsplit(':').next().expect("address:port");
                ports.insert(u16::from_str_radix(port, 16).expect("hex port"));
            }
        }
    }
    ports
}

async fn get(url: &str) -> (StatusCode, String, String) {
    let r = client().get(url).send().await.expect("send");
    let status = r.status();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ctype, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_health_and_metrics_only_on_its_ops_port() {
    let aws = LocalAws::start(30, 4).await;
    let endpoint = aws.moto.endpoint();
    // The web tier only: it takes the jobs, the workers translate them.
    let api = Server::start_on(
        &tiny_config(),
        |c| aws.configure(c, &endpoint, false),
        Some(aws.backends(&endpoint, AwsRole::LambdaApi)),
    )
    .await;

    // Without the key: it works (an image done proves its consumer runs) and listens on nothing.
    let plain = spawn_worker(&aws, &api, "plain", &[]);
    one_image_job(&api, 1).await;
    assert_eq!(listening_ports(plain.0.id()), HashSet::new());
    drop(plain);

    let port = free_port();
    let bind = format!("worker.ops_bind=127.0.0.1:{port}");
    let mut ops = spawn_worker(&aws, &api, "ops", &["--set", &bind]);
    let base = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    loop {
        if let Ok(r) = client().get(format!("{base}/healthz")).send().await
            && r.status() == StatusCode::OK
        {
            break;
        }
        assert!(
            ops.0.try_wait().expect("wait").is_none(),
            "the worker exited: {}",
            std::fs::read_to_string(api.dir.path().join("ops.log")).unwrap_or_default()
        );
        assert!(t.elapsed() < Duration::from_secs(60), "no /healthz");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listening_ports(ops.0.id()), HashSet::from([port]));
    let (status, _, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    one_image_job(&api, 2).await;
    let series = [
        "brs_job_items_total{outcome=\"done\"} 1",
        "brs_images_translated_total{style=\"default\"} 1",
        "brs_result_cache_total{outcome=\"miss\"} 1",
        "brs_inference_seconds_count{style=\"default\"} 1",
        "brs_pending_job_images 0",
        "brs_store_healthy 1",
        "brs_draining 0",
        // The same layer as the API's counts the port's own requests.
        "brs_http_requests_total{route=\"/healthz\",status=\"200\"}",
        // Where the image's time went: store and queue calls beside the translation.
        "brs_job_image_seconds_count{stage=\"total\"} 1",
        "brs_job_image_seconds_count{stage=\"translate\"} 1",
        "brs_store_op_seconds_count{op=\"get\"}",
        "brs_store_op_seconds_count{op=\"put\"}",
        "brs_queue_op_seconds_count{op=\"delete\"} 1",
        "brs_queue_op_seconds_count{op=\"receive\"}",
    ];
    // The job reads done once its result is stored; the worker counts it and settles its message
    // just after, so the counts are waited for, not read once (read once, 2 runs in 6 failed).
    let t = Instant::now();
    loop {
        let (status, ctype, text) = get(&format!("{base}/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        let missing: Vec<&str> = series.into_iter().filter(|s| !text.contains(s)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "/metrics lacks {missing:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing of the API, nothing else.
    for path in ["/", "/v1/jobs", "/v1/models", "/openapi.json", "/metrics/x"] {
        let (status, _, body) = get(&format!("{base}{path}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }

    // SIGTERM: the port stays up through the drain and says so, then goes with the process.
    let pid = ops.0.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(term.expect("kill").success());
    let t = Instant::now();
    loop {
        let (status, _, body) = get(&format!("{base}/readyz")).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(body.contains("draining"), "{body}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "/readyz still {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, _) = get(&format!("{base}/healthz")).await;
    assert_eq!(status, StatusCode::OK, "alive while draining");
    let t = Instant::now();
    let exit = loop {
        if let Some(s) = ops.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the worker did not exit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit}");
    assert!(
        client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
    api.stop().await;
}

/// A taken port stops the worker at once, before any model loads, naming the key.
#[test]
fn a_taken_ops_port_fails_the_start_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_brs-serve"))
        .args(["worker", "--model-dir"])
        .arg(dir.path().join("no-model-here"))
        .args(["--set", &format!("worker.ops_bind={addr}")])
        .env("BRS_SECRET", "w".repeat(32))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("worker.ops_bind") && err.contains(&addr.to_string()),
        "{err}"
    );
}
