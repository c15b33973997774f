//! Helpers shared by the HTTP tests: tiny real models, an in-process server on loopback, fixtures.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brs_model::ModelConfig;
use brs_serve::config::StyleConfig;
use brs_serve::{AppState, Config};

/// The smallest generator the model crate accepts: fast enough for hundreds of requests.
pub(crate) fn tiny_config() -> ModelConfig {
    ModelConfig {
        img_size: 96,
        img_ch: 3,
        ch: 4,
        n_res: 1,
        light: true,
    }
}

/// Publishes a random generator into `run_dir` (moving its `latest`).
pub(crate) fn publish(run_dir: &Path, cfg: &ModelConfig, seed: i64, iteration: u64) -> PathBuf {
    brs_model::translator::write_random_export(run_dir, cfg, seed, iteration)
        .expect("write a random export")
}

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var("BRS_FIXTURES")
        .expect("BRS_FIXTURES is unset: run the tests through cargo after scripts/setup");
    std::fs::read(Path::new(&dir).join(name)).expect("read fixture")
}

pub(crate) fn fixture_path(name: &str) -> PathBuf {
    let dir = std::env::var("BRS_FIXTURES")
        .expect("BRS_FIXTURES is unset: run the tests through cargo after scripts/setup");
    Path::new(&dir).join(name)
}

/// A small PNG of the given size.
pub(crate) fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 99]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
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
        let dir = tempfile::tempdir().expect("tempdir");
        let run_dir = dir.path().join("run");
        publish(&run_dir, model, 1, 1);
        let mut cfg = Config {
            results_dir: Some(dir.path().join("results")),
            reload_poll_ms: 100,
            drain_grace_secs: 0.2,
            ..Config::default()
        };
        cfg.styles.insert(
            "default".into(),
            StyleConfig {
                path: run_dir.clone(),
                direction: brs_model::Direction::A2B,
            },
        );
        tweak(&mut cfg);
        let state = tokio::task::spawn_blocking(move || AppState::build(cfg))
            .await
            .expect("join")
            .expect("server state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(brs_serve::serve(listener, state.clone(), async move {
            let _ = rx.await;
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

/// A loopback port nobody listens on right now, for a server spawned as its own process. Chosen
/// below the kernel's ephemeral range (32768-60999 here): a port taken from `bind(0)` and released
/// could be handed to another test's in-process server (they bind port 0) before the child binds
/// it, and the test would then talk to the wrong server.
pub(crate) fn free_port() -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    (0..12_000u32)
        .map(|i| 20_000 + (seed.wrapping_add(i * 7_919) % 12_000) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free loopback port in 20000-31999")
}

/// Kills and reaps a spawned server when a test ends, however it ends.
pub(crate) struct Kill(pub(crate) std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
