//! SIGTERM on the real binary under load: readiness fails at once, every in-flight request
//! succeeds, new work is refused after the grace period, and the process exits cleanly. On the
//! way, the process is checked to run with the serving settings (malloc, OpenMP wait policy).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::{Kill, client, free_port, png, publish, slow_model};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    // Slow enough (about a hundred ms per image, 12 images on two lanes or one session) that
    // requests are still queued when SIGTERM lands 150 ms in; at 8 channels the lanes once
    // finished all twelve before it.
    let model = slow_model(16, 2);
    publish(&run, &model, 1, 1);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_brs-serve"))
        .args([
            "--model-dir",
            run.to_str().expect("utf8"),
            "--bind",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--set",
            &format!("store.path={:?}", dir.path().join("results")),
        ])
        .args([
            "--set",
            "drain_grace=1s",
            "--set",
            "queue_depth=64",
            "--set",
            "max_batch=2",
            "--set",
            "clients.max_concurrent=64",
            "--set",
            "clients.image_burst=1000",
        ])
        .env_remove("OMP_WAIT_POLICY")
        .env_remove("BRS_MALLOC")
        .env_remove("GLIBC_TUNABLES")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn brs-serve");
    let mut child = Kill(child);
    let c = client();
    child.wait_ready(&c, &base).await;

    // It re-executed itself (same pid) with the serving profile's environment.
    let environ = std::fs::read(format!("/proc/{}/environ", child.0.id())).expect("environ");
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let profile = brs_model::alloc::Profile::Serving;
    // glibc parses GLIBC_TUNABLES in place at startup (its `:` may read back as NUL), so each
    // tunable is looked for on its own.
    for tunable in profile.tunables().split(':') {
        assert!(
            vars.iter().any(|v| v.contains(tunable)),
            "{tunable}: {vars:?}"
        );
    }
    for (key, value) in profile.defaults() {
        assert!(vars.contains(&format!("{key}={value}")), "{key}: {vars:?}");
    }

    let mut in_flight = Vec::new();
    for i in 0..12u8 {
        let (c, url) = (c.clone(), format!("{base}/v1/translate"));
        let mut body = png(256, 256);
        body.push(i);
        in_flight.push(tokio::spawn(async move {
            c.post(url)
                .header("content-type", "image/png")
                .body(body)
                .send()
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // The test only means something if work was really in flight when the signal landed.
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let busy: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("brs_in_flight_requests "))
        .and_then(|v| v.trim().parse().ok())
        .expect("in-flight gauge");
    assert!(
        busy >= 1.0,
        "nothing in flight at SIGTERM; make the model slower"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = c
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz while draining");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Inside the grace period new work is still taken (the balancer has not noticed yet).
    let late = c
        .post(format!("{base}/v1/translate"))
        .header("content-type", "image/png")
        .body(png(33, 33))
        .send()
        .await
        .expect("send during grace");
    assert_eq!(late.status(), StatusCode::OK);

    let mut ok = 0;
    for t in in_flight {
        let r = t
            .await
            .expect("join")
            .expect("in-flight request failed at the transport level");
        assert_eq!(r.status(), StatusCode::OK, "in-flight request failed");
        assert!(!r.bytes().await.expect("body").is_empty());
        ok += 1;
    }
    assert_eq!(ok, 12);

    // After the grace period: refused with 503, or the listener is already closed.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    if let Ok(r) = c
        .post(format!("{base}/v1/translate"))
        .header("content-type", "image/png")
        .body(png(34, 34))
        .send()
        .await
    {
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let t = Instant::now();
    let code = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "brs-serve did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(code.success(), "exit status {code}");
}
