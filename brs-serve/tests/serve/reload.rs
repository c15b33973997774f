//! Hot reload under concurrent load: new checkpoints swap in with zero failed requests; corrupt or
//! missing ones are refused, counted, and the old model keeps serving.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::{Server, client, get_json, png, publish, tiny_config};

async fn iteration(s: &Server) -> u64 {
    let m = get_json(s.url("/v1/models")).await;
    m["styles"][0]["model"]["iteration"]
        .as_u64()
        .expect("iteration")
}

async fn wait_for(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let t = Instant::now();
    while !f().await {
        assert!(
            t.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request_and_refuses_corrupt_checkpoints() {
    let s = Server::start(|c| c.reload_poll_ms = 100).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for worker in 0..4u8 {
        let (stop, url) = (stop.clone(), s.url("/v1/translate"));
        clients.push(tokio::spawn(async move {
            let c = client();
            let (mut ok, mut failed, mut versions) = (0u32, Vec::new(), BTreeSet::new());
            let mut n = 0u32;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                // Unique bytes every time, so each request really runs the generator.
                let mut body = png(40, 40);
                body.extend_from_slice(&n.to_le_bytes());
                body.push(worker);
                let r = c
                    .post(&url)
                    .header("content-type", "image/png")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::OK => {
                        versions.insert(
                            r.headers()["x-brs-model-version"]
                                .to_str()
                                .unwrap_or("")
                                .to_string(),
                        );
                        ok += 1;
                    }
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed, versions)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cfg = tiny_config();
    publish(&s.run_dir, &cfg, 2, 2);
    wait_for(
        "reload to iteration 2",
        Duration::from_secs(20),
        async || iteration(&s).await == 2,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A corrupt checkpoint, published the way a writer would (complete directory, then pointer).
    let scratch = tempfile::tempdir().expect("tempdir");
    let bad = publish(scratch.path(), &cfg, 3, 3);
    let weights = bad.join("genA2B.safetensors");
    let mut bytes = std::fs::read(&weights).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&weights, bytes).expect("corrupt");
    std::fs::rename(&bad, s.run_dir.join("export-0000003")).expect("move in");
    brs_model::checkpoint::set_latest(&s.run_dir, "export-0000003").expect("pointer");
    let failed = "brs_model_reloads_total{style=\"default\",outcome=\"failed\"}";
    wait_for(
        "corrupt checkpoint refused",
        Duration::from_secs(20),
        async || s.metric(failed).await == 1.0,
    )
    .await;
    // An incomplete one: the pointer names a directory that is not there.
    brs_model::checkpoint::set_latest(&s.run_dir, "export-0000004").expect("pointer");
    wait_for(
        "missing checkpoint refused",
        Duration::from_secs(20),
        async || s.metric(failed).await == 2.0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);

    let (mut ok, mut versions) = (0, BTreeSet::new());
    for c in clients {
        let (n, failed, v) = c.await.expect("join");
        assert!(
            failed.is_empty(),
            "failed requests during reload: {failed:?}"
        );
        ok += n;
        versions.extend(v);
    }
    assert!(ok >= 20, "only {ok} requests completed");
    assert_eq!(
        versions.len(),
        2,
        "both model versions served: {versions:?}"
    );
    assert_eq!(iteration(&s).await, 2, "old model keeps serving");
    assert_eq!(
        s.metric("brs_model_reloads_total{style=\"default\",outcome=\"ok\"}")
            .await,
        1.0
    );
    s.stop().await;
}
