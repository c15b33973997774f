//! Helpers shared by the HTTP tests: tiny real models, an in-process server on loopback, fixtures.
#![allow(dead_code)]

pub(crate) mod aws;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brs_model::ModelConfig;
use brs_serve::config::{StoreConfig, StyleConfig};
use brs_serve::{AppState, Config, Role, Stop};
pub(crate) use brs_testkit::free_port;
pub(crate) use brs_testkit::images::png;
pub(crate) use brs_testkit::model::{publish, tiny_config};
pub(crate) use brs_testkit::setup::fixture as fixture_path;
pub(crate) use brs_testkit::setup::fixture_bytes;

/// A light 256 px generator `ch` wide with `n_res` blocks: slow enough (tens to hundreds of ms
/// an image) that requests queue up behind it, unlike `tiny_config`.
pub(crate) fn slow_model(ch: i64, n_res: i64) -> ModelConfig {
    ModelConfig {
        img_size: 256,
        img_ch: 3,
        ch,
        n_res,
        light: true,
        ..ModelConfig::default()
    }
}

/// The config every test server starts from: the store in `dir`, quick reloads and drains.
pub(crate) fn test_config(dir: &Path, run_dir: &Path) -> Config {
    let mut cfg = Config {
        store: StoreConfig {
            path: Some(dir.join("results")),
            ..StoreConfig::default()
        },
        // libtorch without `auto`'s timing of both engines at every load; tests/serve/engine.rs
        // covers the engines.
        engine: brs_engine::EngineSpec::Torch,
        reload_poll: Duration::from_millis(100),
        reload_jitter: Duration::ZERO,
        drain_grace: Duration::from_millis(200),
        // Every test client is 127.0.0.1: per-client limits are tested on their own (abuse.rs).
        clients: brs_serve::config::ClientLimits {
            images_per_sec: 10_000.0,
            image_burst: 10_000,
            reads_per_sec: 10_000.0,
            read_burst: 10_000,
            max_concurrent: 1_000,
            max_streams: 1_000,
            ban_after: 0,
            ..brs_serve::config::ClientLimits::default()
        },
        ..Config::default()
    };
    cfg.styles.insert(
        "default".into(),
        StyleConfig {
            path: run_dir.to_path_buf(),
            direction: brs_model::Direction::A2B,
        },
    );
    cfg
}

/// A server running in this process on a loopback port, with its own model and results dirs.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) state: AppState,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) run_dir: PathBuf,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Starts with one style `default` on a fresh tiny model; `tweak` edits the config first.
    pub(crate) async fn start(tweak: impl FnOnce(&mut Config)) -> Server {
        Self::start_with(&tiny_config(), tweak).await
    }

    pub(crate) async fn start_with(model: &ModelConfig, tweak: impl FnOnce(&mut Config)) -> Server {
        Self::start_on(model, tweak, None).await
    }

    /// Like `start_with`, on a store and queue built by the test (S3 and SQS on moto).
    pub(crate) async fn start_on(
        model: &ModelConfig,
        tweak: impl FnOnce(&mut Config),
        backends: Option<(brs_serve::store::Backend, brs_serve::queue::Queue)>,
    ) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let run_dir = dir.path().join("run");
        publish(&run_dir, model, 1, 1);
        let mut cfg = test_config(dir.path(), &run_dir);
        tweak(&mut cfg);
        let state = match backends {
            Some((store, queue)) => AppState::start_with(cfg, Role::Server, store, queue).await,
            None => AppState::start(cfg, Role::Server).await,
        }
        .expect("server state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(brs_serve::serve(listener, state.clone(), async move {
            let _ = rx.await;
            Stop::Terminate
        }));
        let server = Server {
            addr,
            state,
            dir,
            run_dir,
            task,
            stop: Some(tx),
        };
        server.wait_ready(Duration::from_secs(60)).await;
        server
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub(crate) async fn wait_ready(&self, limit: Duration) {
        let c = client();
        let t = Instant::now();
        loop {
            if let Ok(r) = c.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(t.elapsed() < limit, "server not ready after {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of one metric line (exact name and labels), or 0 when absent.
    pub(crate) async fn metric(&self, series: &str) -> f64 {
        let text = client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map(|v| v.trim().parse().expect("number"))
            .unwrap_or(0.0)
    }

    /// Drains and stops the server; returns once it has exited.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("server stops")
            .expect("join")
            .expect("serve");
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// GET `url` and parse its JSON body (whatever the status).
pub(crate) async fn get_json(url: String) -> serde_json::Value {
    client()
        .get(url)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

/// GET `url` and read its whole body as text (an event stream: until the server ends it).
pub(crate) async fn get_text(url: String) -> String {
    client()
        .get(url)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body")
}

/// Decodes a response body and returns its format and dimensions.
pub(crate) fn decode(bytes: &[u8]) -> (image::ImageFormat, u32, u32) {
    let fmt = image::guess_format(bytes).expect("an image");
    let img = image::load_from_memory(bytes).expect("decodes");
    (fmt, img.width(), img.height())
}

/// The `{"error": {"code", "message"}}` body of an error response.
pub(crate) async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.expect("json error body");
    let code = v["error"]["code"].as_str().expect("error.code").to_string();
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message in {v}"
    );
    code
}

/// Kills and reaps a spawned server when a test ends, however it ends.
pub(crate) struct Kill(pub(crate) std::process::Child);

impl Kill {
    /// Waits (at most a minute) until the brs-serve this child runs answers `/readyz` with 200 at
    /// `base`; fails the test at once if the process exits first.
    pub(crate) async fn wait_ready(&mut self, c: &reqwest::Client, base: &str) {
        let t = Instant::now();
        loop {
            if let Ok(r) = c.get(format!("{base}/readyz")).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "brs-serve never became ready"
            );
            assert!(
                self.0.try_wait().expect("wait").is_none(),
                "brs-serve exited early"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
