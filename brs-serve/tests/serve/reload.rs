//! Hot reload under concurrent load: new checkpoints swap in with zero failed requests; corrupt or
//! missing ones are refused, counted, and the old model keeps serving. A style whose model is not
//! deployed yet starts waiting for it (issue 26) and serves once the poller finds it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use brs_serve::{AppState, Role, Stop};
use reqwest::StatusCode;

use crate::common::{Server, client, error_code, get_json, png, publish, test_config, tiny_config};

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
    let s = Server::start(|c| c.reload_poll = std::time::Duration::from_millis(100)).await;
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
    let corrupt = "brs_model_reloads_total{style=\"default\",outcome=\"corrupt\"}";
    wait_for(
        "corrupt checkpoint refused",
        Duration::from_secs(20),
        async || s.metric(corrupt).await >= 1.0,
    )
    .await;
    // An incomplete one: the pointer names a directory that is not there.
    brs_model::checkpoint::set_latest(&s.run_dir, "export-0000004").expect("pointer");
    let missing = "brs_model_reloads_total{style=\"default\",outcome=\"missing\"}";
    wait_for(
        "missing checkpoint refused",
        Duration::from_secs(20),
        async || s.metric(missing).await >= 1.0,
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

/// Rewrites a checkpoint's meta.json through `edit` and records its new hash, as a writer that
/// means it would: the integrity check passes, so only the limits can stop it.
fn rewrite_meta(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    use sha2::Digest;
    let path = dir.join(brs_model::checkpoint::META);
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    edit(&mut meta);
    let bytes = serde_json::to_vec_pretty(&meta).expect("json");
    std::fs::write(&path, &bytes).expect("write");
    let sum = hex::encode(sha2::Sha256::digest(&bytes));
    std::fs::write(
        dir.join(brs_model::checkpoint::META_SHA256),
        format!("{sum}\n"),
    )
    .expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_models_are_refused_and_failed_loads_are_retried() {
    let s = Server::start(|c| c.reload_poll = Duration::from_millis(100)).await;
    let cfg = tiny_config();
    // A checkpoint whose meta.json asks for a network far over [models]: refused before a byte
    // of it is allocated, and the old model keeps serving.
    let scratch = tempfile::tempdir().expect("tempdir");
    let huge = publish(scratch.path(), &cfg, 5, 5);
    rewrite_meta(&huge, |m| m["model"]["ch"] = serde_json::json!(1024));
    std::fs::rename(&huge, s.run_dir.join("export-0000005")).expect("move in");
    brs_model::checkpoint::set_latest(&s.run_dir, "export-0000005").expect("pointer");
    let over = "brs_model_reloads_total{style=\"default\",outcome=\"over_limit\"}";
    wait_for(
        "oversized model refused",
        Duration::from_secs(20),
        async || s.metric(over).await >= 1.0,
    )
    .await;
    assert_eq!(iteration(&s).await, 1);

    // A checkpoint missing a file fails to load; once the file appears (a slow copy, an EFS
    // hiccup), the retry after the backoff loads it: a failed name is not refused forever.
    let slow = publish(scratch.path(), &cfg, 6, 6);
    let weights = slow.join("genA2B.safetensors");
    let kept = std::fs::read(&weights).expect("read");
    std::fs::remove_file(&weights).expect("rm");
    std::fs::rename(&slow, s.run_dir.join("export-0000006")).expect("move in");
    brs_model::checkpoint::set_latest(&s.run_dir, "export-0000006").expect("pointer");
    let io = "brs_model_reloads_total{style=\"default\",outcome=\"io\"}";
    wait_for(
        "missing file refused",
        Duration::from_secs(20),
        async || s.metric(io).await >= 1.0,
    )
    .await;
    std::fs::write(s.run_dir.join("export-0000006/genA2B.safetensors"), kept).expect("restore");
    wait_for("retried and loaded", Duration::from_secs(30), async || {
        iteration(&s).await == 6
    })
    .await;
    s.stop().await;
}

/// A server whose style's model may not be there yet (`Server::start` publishes one and waits
/// for /readyz).
struct Waiting {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Waiting {
    /// Starts with style `default` at `dir/<style_path>`, whatever is there.
    async fn start(style_path: &str, prepare: impl FnOnce(&Path)) -> Waiting {
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(dir.path());
        let cfg = test_config(dir.path(), &dir.path().join(style_path));
        let state = AppState::start(cfg, Role::Server)
            .await
            .expect("starts without its model");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(brs_serve::serve(listener, state, async move {
            let _ = rx.await;
            Stop::Terminate
        }));
        Waiting {
            addr,
            dir,
            task,
            stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// /readyz's status and body.
    async fn readyz(&self) -> (StatusCode, serde_json::Value) {
        let r = client()
            .get(self.url("/readyz"))
            .send()
            .await
            .expect("readyz");
        let status = r.status();
        (status, r.json().await.expect("json"))
    }

    /// The reason /readyz gives for style `default`, or "" when it gives none.
    async fn reason(&self) -> String {
        let (_, body) = self.readyz().await;
        body["waiting"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn translate(&self) -> reqwest::Response {
        client()
            .post(self.url("/v1/translate"))
            .header("content-type", "image/png")
            .body(png(40, 40))
            .send()
            .await
            .expect("translate")
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server stops")
            .expect("join")
            .expect("serve");
    }
}

/// The 503 a style with no model answers: `model_unavailable`, with `Retry-After`.
async fn assert_unavailable(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    assert_eq!(error_code(r).await, "model_unavailable");
}

async fn wait_until_serving(s: &Waiting) {
    wait_for("the style to serve", Duration::from_secs(30), async || {
        get_json(s.url("/v1/models")).await["styles"][0]["state"] == "serving"
    })
    .await;
    let (status, body) = s.readyz().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["waiting"].is_null(), "{body}");
    let r = s.translate().await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-brs-model-version"));
    let m = get_json(s.url("/v1/models")).await;
    assert_eq!(m["styles"][0]["state"], "serving", "{m}");
    assert!(m["styles"][0]["waiting"].is_null(), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_26_a_style_whose_run_is_not_deployed_yet_waits_then_serves() {
    let s = Waiting::start("run", |_| {}).await;
    // Ready (a load balancer keeps the instance), naming what the style waits for.
    let (status, body) = s.readyz().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let message = body["waiting"][0]["message"].as_str().expect("message");
    assert!(message.contains("\"default\""), "{message}");
    assert_eq!(body["waiting"][0]["style"], "default", "{body}");
    assert_eq!(body["waiting"][0]["reason"], "no_directory", "{body}");
    assert_eq!(body["waiting"][0]["missing"], "run", "{body}");
    assert!(
        !message.contains(&*s.dir.path().to_string_lossy()),
        "no server path in a public answer: {message}"
    );

    let m = get_json(s.url("/v1/models")).await;
    let style = &m["styles"][0];
    assert_eq!(style["state"], "waiting", "{m}");
    assert_eq!(style["ready"], false, "{m}");
    assert!(style["model"].is_null(), "{m}");
    assert_eq!(style["waiting"]["missing"], "run", "{m}");
    assert_unavailable(s.translate().await).await;

    // The directory first, then the run in it, as a copy onto EFS would make them.
    std::fs::create_dir(s.path("run")).expect("mkdir");
    wait_for("the empty run seen", Duration::from_secs(20), async || {
        s.reason().await == "no_latest"
    })
    .await;
    assert_unavailable(s.translate().await).await;
    publish(&s.path("run"), &tiny_config(), 1, 1);
    wait_until_serving(&s).await;
    let m = get_json(s.url("/v1/models")).await;
    assert_eq!(m["styles"][0]["model"]["iteration"], 1, "{m}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_26_latest_naming_a_checkpoint_not_copied_yet_waits_for_it() {
    let s = Waiting::start("run", |dir| {
        std::fs::create_dir(dir.join("run")).expect("mkdir");
        brs_model::checkpoint::set_latest(&dir.join("run"), "export-0000001").expect("pointer");
    })
    .await;
    let (status, body) = s.readyz().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["waiting"][0]["reason"], "no_checkpoint", "{body}");
    assert_eq!(body["waiting"][0]["missing"], "export-0000001", "{body}");
    assert_unavailable(s.translate().await).await;
    publish(&s.path("run"), &tiny_config(), 1, 1);
    wait_until_serving(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_26_an_export_directory_given_directly_is_served_once_it_appears() {
    let s = Waiting::start("export", |_| {}).await;
    assert_eq!(s.reason().await, "no_directory");
    assert_unavailable(s.translate().await).await;
    let scratch = tempfile::tempdir().expect("tempdir");
    let export = publish(scratch.path(), &tiny_config(), 1, 1);
    std::fs::rename(&export, s.path("export")).expect("move in");
    wait_until_serving(&s).await;
    s.stop().await;
}
