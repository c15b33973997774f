//! The `engine` key: ONNX Runtime serves, batches, hot-reloads and drains as libtorch does, with
//! the same images; `auto` times both at load and shows its choice and both times in
//! /v1/models; `onnx` without ONNX Runtime stops the start with a clear error, `auto` serves
//! with libtorch.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brs_engine::{EngineSpec, OnnxLanes};
use reqwest::StatusCode;

use crate::common::{Kill, Server, client, free_port, get_json, publish, slow_model, tiny_config};

/// A photo-like PNG, different for every `seed`, so each request runs the generator.
fn photo(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(120, 100, |x, y| {
        image::Rgb([
            (x * 2) as u8 ^ seed,
            (y * 2 + u32::from(seed)) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    brs_testkit::images::encode(
        &image::DynamicImage::ImageRgb8(img),
        image::ImageFormat::Png,
    )
}

/// POSTs `body` to /v1/translate as a PNG; the answer's status, model version and decoded image.
async fn translate(s: &Server, body: Vec<u8>) -> (StatusCode, String, Option<image::RgbImage>) {
    let r = client()
        .post(s.url("/v1/translate?format=png"))
        .header("content-type", "image/png")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = r.status();
    let version = r
        .headers()
        .get("x-brs-model-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = r.bytes().await.expect("body");
    let img = (status == StatusCode::OK)
        .then(|| image::load_from_memory(&bytes).expect("a PNG").to_rgb8());
    (status, version, img)
}

async fn model(s: &Server) -> serde_json::Value {
    get_json(s.url("/v1/models")).await["styles"][0]["model"].clone()
}

/// Images through the generator and the forward passes that took them, so far.
async fn images_and_passes(s: &Server) -> (f64, f64) {
    (
        s.metric("brs_batch_size_sum{style=\"default\"}").await,
        s.metric("brs_batch_size_count{style=\"default\"}").await,
    )
}

/// A second server on `s`'s run directory (the same checkpoint), configured by `tweak`.
async fn beside(s: &Server, tweak: impl FnOnce(&mut brs_serve::Config)) -> Server {
    let run = s.run_dir.clone();
    Server::start(move |c| {
        tweak(c);
        if let Some(style) = c.styles.get_mut("default") {
            style.path = run;
        }
    })
    .await
}

/// The largest difference of one channel of one pixel, in grey levels.
fn max_grey_diff(a: &image::RgbImage, b: &image::RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_serves_batches_and_hot_reloads_with_the_images_libtorch_gives() {
    // A batch waits up to 300 ms to fill, so concurrent requests share forward passes.
    let s = Server::start(|c| {
        c.engine = EngineSpec::Onnx;
        c.onnx_lanes = OnnxLanes::Timed;
        c.max_batch = 4;
        c.max_wait = Duration::from_millis(300);
    })
    .await;
    let m = model(&s).await;
    assert_eq!(m["engine"], "onnx", "{m}");
    assert_eq!(m["precision"], "f32", "{m}");
    assert_eq!(m["engine_timings"], serde_json::json!([]), "not timed: {m}");
    // Each batch size from 2 to the lane count (one per core libtorch uses), timed both ways at
    // load, runs the faster way.
    let regimes = m["engine_regimes"].as_array().expect("engine_regimes");
    for (k, r) in regimes.iter().enumerate() {
        assert_eq!(r["images"], k + 2, "{m}");
        let (side, one) = (
            r["side_by_side_ms"].as_f64().expect("ms"),
            r["one_session_ms"].as_f64().expect("ms"),
        );
        assert!(side > 0.0 && one > 0.0, "{m}");
        assert_eq!(r["side_by_side"], side < one, "the faster is kept: {m}");
    }
    // Where side by side won, waiting images run on the lanes one by one instead of in batches.
    let side_by_side = regimes.last().is_some_and(|r| r["side_by_side"] == true);
    let lanes = m["engine_lanes"].as_u64().expect("engine_lanes");
    assert_eq!(
        lanes,
        if side_by_side {
            regimes.len() as u64 + 1
        } else {
            0
        },
        "{m}"
    );

    let requests: Vec<_> = (0..4u8)
        .map(|k| {
            let url = s.url("/v1/translate");
            tokio::spawn(async move {
                client()
                    .post(url)
                    .header("content-type", "image/png")
                    .body(photo(k))
                    .send()
                    .await
                    .expect("send")
                    .status()
            })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.expect("join"), StatusCode::OK);
    }
    let (images, passes) = images_and_passes(&s).await;
    assert_eq!(images, 4.0);
    if side_by_side {
        assert_eq!(passes, images, "each image on a lane of its own");
    } else {
        assert!(
            passes < images,
            "4 concurrent requests took {passes} forward passes: no batch"
        );
    }

    // The same checkpoint served by libtorch in float32, as ONNX Runtime runs, gives the same
    // picture (`precision = "auto"` would be bf16 on a CPU with AVX512-BF16: a few grey levels).
    let (status, v1, onnx_img) = translate(&s, photo(9)).await;
    assert_eq!(status, StatusCode::OK);
    let torch = beside(&s, |c| {
        c.engine = EngineSpec::Torch;
        c.precision = brs_model::Precision::F32;
    })
    .await;
    assert_eq!(model(&torch).await["engine"], "torch");
    let (_, torch_v1, torch_img) = translate(&torch, photo(9)).await;
    assert_eq!(v1, torch_v1, "the same checkpoint");
    let (onnx_img, torch_img) = (
        onnx_img.expect("onnx image"),
        torch_img.expect("torch image"),
    );
    let d = max_grey_diff(&onnx_img, &torch_img);
    assert!(d <= 1, "onnx and torch differ by {d} grey levels");
    torch.stop().await;

    // A new checkpoint is loaded with the same engine and served without a failed request.
    publish(&s.run_dir, &tiny_config(), 2, 2);
    let t = Instant::now();
    loop {
        let m = model(&s).await;
        if m["iteration"] == 2 {
            assert_eq!(m["engine"], "onnx", "{m}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no reload: {m}");
        let (status, _, _) = translate(&s, photo(7)).await;
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, v2, _) = translate(&s, photo(9)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(v1, v2, "the new model answers");
    assert_eq!(
        s.metric("brs_model_reloads_total{style=\"default\",outcome=\"ok\"}")
            .await,
        1.0
    );
    // Drains and exits like any server.
    s.stop().await;
}

/// `onnx_lanes = "always"`: waiting images run side by side on single-thread lanes, each image a
/// pass of its own taken as a lane comes free (never a batch, though a batch could form), giving
/// the images one session on every core gives; a hot reload hands the lanes the new generator,
/// and the server drains as any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_lanes_take_waiting_images_one_by_one_with_the_same_images() {
    let lanes = Server::start(|c| {
        c.engine = EngineSpec::Onnx;
        c.onnx_lanes = OnnxLanes::Always;
        c.max_batch = 4;
        // Batches would wait up to 300 ms to fill: lanes take images as they come instead.
        c.max_wait = Duration::from_millis(300);
    })
    .await;
    let m = model(&lanes).await;
    assert!(
        m["engine_lanes"].as_u64().expect("engine_lanes") >= 2,
        "{m}"
    );
    assert_eq!(
        m["engine_regimes"],
        serde_json::json!([]),
        "nothing timed: {m}"
    );
    let (a, b, c, d) = tokio::join!(
        translate(&lanes, photo(0)),
        translate(&lanes, photo(1)),
        translate(&lanes, photo(2)),
        translate(&lanes, photo(3)),
    );
    assert_eq!(
        images_and_passes(&lanes).await,
        (4.0, 4.0),
        "one image per pass"
    );

    let one = beside(&lanes, |c| {
        c.engine = EngineSpec::Onnx;
        c.onnx_lanes = OnnxLanes::Off;
    })
    .await;
    assert_eq!(model(&one).await["engine_lanes"], 0);
    for (k, (status, _, img)) in [a, b, c, d].into_iter().enumerate() {
        assert_eq!(status, StatusCode::OK);
        let (_, _, whole) = translate(&one, photo(k as u8)).await;
        let d = max_grey_diff(
            &img.expect("lane image"),
            &whole.expect("one-session image"),
        );
        assert!(
            d <= 1,
            "image {k}: lanes and one session differ by {d} grey levels"
        );
    }
    one.stop().await;

    publish(&lanes.run_dir, &tiny_config(), 2, 2);
    let t = Instant::now();
    loop {
        let (status, _, _) = translate(&lanes, photo(5)).await;
        assert_eq!(status, StatusCode::OK);
        let m = model(&lanes).await;
        if m["iteration"] == 2 {
            assert!(m["engine_lanes"].as_u64().expect("lanes") >= 2, "{m}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no reload: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (x, y) = tokio::join!(translate(&lanes, photo(8)), translate(&lanes, photo(9)));
    assert_eq!((x.0, y.0), (StatusCode::OK, StatusCode::OK));
    assert_ne!(x.1, "", "answered by a model");
    lanes.stop().await;
}

/// A drain (what SIGTERM starts) with ONNX Runtime serving: every request in flight is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_drains_in_flight_requests() {
    // Slow enough (tens of ms an image) that requests are still queued when the drain starts.
    let s = Server::start_with(&slow_model(8, 2), |c| {
        c.engine = EngineSpec::Onnx;
        c.max_batch = 2;
    })
    .await;
    assert_eq!(model(&s).await["engine"], "onnx");
    let in_flight: Vec<_> = (0..16u8)
        .map(|k| {
            let url = s.url("/v1/translate");
            tokio::spawn(async move {
                client()
                    .post(url)
                    .header("content-type", "image/png")
                    .body(photo(k))
                    .send()
                    .await
                    .expect("send")
                    .status()
            })
        })
        .collect();
    let t = Instant::now();
    while s.metric("brs_in_flight_requests").await < 1.0 {
        assert!(t.elapsed() < Duration::from_secs(10), "nothing in flight");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopped = tokio::spawn(s.stop());
    for r in in_flight {
        assert_eq!(r.await.expect("join"), StatusCode::OK);
    }
    stopped.await.expect("drained and stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_keeps_the_faster_engine_and_shows_both_timings() {
    let s = Server::start(|c| c.engine = EngineSpec::Auto).await;
    assert_timed(&model(&s).await);
    let (status, _, _) = translate(&s, photo(1)).await;
    assert_eq!(status, StatusCode::OK);

    // Every hot reload times both engines again, for the new model.
    publish(&s.run_dir, &tiny_config(), 2, 2);
    let t = Instant::now();
    let m = loop {
        let m = model(&s).await;
        if m["iteration"] == 2 {
            break m;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no reload: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_timed(&m);
    let (status, _, _) = translate(&s, photo(2)).await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
}

/// `model` runs the engine `auto` found faster, and shows both engines' times, that one first.
fn assert_timed(m: &serde_json::Value) {
    let engine = m["engine"].as_str().expect("engine");
    assert!(engine == "torch" || engine == "onnx", "{m}");
    let timings = m["engine_timings"].as_array().expect("timings");
    assert_eq!(timings.len(), 2, "{m}");
    assert_eq!(timings[0]["engine"], engine, "the faster runs: {m}");
    let engines: Vec<&str> = timings
        .iter()
        .filter_map(|t| t["engine"].as_str())
        .collect();
    assert!(
        engines.contains(&"torch") && engines.contains(&"onnx"),
        "{m}"
    );
    let ms: Vec<f64> = timings.iter().filter_map(|t| t["ms"].as_f64()).collect();
    assert!(ms.len() == 2 && ms[0] > 0.0 && ms[0] <= ms[1], "{m}");
    assert!(timings.iter().all(|t| t["precision"].is_string()), "{m}");
    assert_eq!(
        m["precision"], timings[0]["precision"],
        "the precision served is the winner's: {m}"
    );
}

fn spawn(run: &Path, engine: &str, port: u16, ort: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brs-serve"));
    cmd.args(["--model-dir", run.to_str().expect("utf8")])
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(["--set", &format!("engine={engine}")])
        .args([
            "--set",
            &format!("store.path={:?}", run.with_file_name("results")),
        ])
        .env("ORT_DYLIB_PATH", ort)
        .stdout(Stdio::null());
    cmd
}

/// Without ONNX Runtime, `engine = "onnx"` stops the start with an error naming the key and the
/// library (no panic); `auto`, the default, serves with libtorch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_onnx_runtime_onnx_refuses_to_start_and_auto_serves_with_libtorch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    publish(&run, &tiny_config(), 1, 1);
    let missing = dir.path().join("libonnxruntime.so.missing");

    let out = spawn(&run, "onnx", free_port(), &missing)
        .stderr(Stdio::piped())
        .output()
        .expect("run brs-serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("engine = \"onnx\"") && err.contains("ONNX Runtime"),
        "{err}"
    );
    assert!(err.contains("libonnxruntime.so.missing"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let port = free_port();
    let mut child = Kill(
        spawn(&run, "auto", port, &missing)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn brs-serve"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let c = client();
    child.wait_ready(&c, &base).await;
    let m: serde_json::Value = c
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    let m = &m["styles"][0]["model"];
    assert_eq!(m["engine"], "torch", "{m}");
    assert_eq!(m["engine_timings"], serde_json::json!([]), "{m}");
    // Why, in the API and not only in the log.
    let note = m["engine_note"].as_str().unwrap_or_default();
    assert!(note.contains("libonnxruntime.so.missing"), "{m}");
}
