//! The release bundle's brs-lambda (scripts/package) under the Lambda runtime stand-in, with the
//! model size production serves: it must answer from the unpacked bundle alone, and its cold start
//! (process start to first response: libraries, weights from disk, warm-up and first forward) is
//! reported for docs/cost.md. Ignored by default: scripts/check-bundle runs it with BRS_BUNDLE_DIR.
//! `BRS_ENGINE` and `BRS_LAMBDA_CONFIG`, when set, are passed to the function (as a function's
//! configuration would), so the cold start of each engine and precision can be measured.

#[allow(dead_code)]
mod common;

use std::io::Cursor;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use brs_model::ModelConfig;
use common::{Outcome, RuntimeApi, body_bytes, spawn_function_at, url_event};

/// A 256 px photo-like PNG: smooth gradients plus a pattern, varied per `seed` (no result-cache hit).
fn photo(seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(256, 256, |x, y| {
        image::Rgb([
            ((x + seed * 7) % 256) as u8,
            ((y * 3 + seed) % 256) as u8,
            (((x ^ y) + seed * 13) % 256) as u8,
        ])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode png");
    out
}

fn translated_png(outcome: Outcome, log: &std::path::Path) -> Vec<u8> {
    let resp = match outcome {
        Outcome::Response(v) => v,
        Outcome::Error(e) => panic!(
            "invocation failed: {e}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    };
    assert_eq!(
        resp["statusCode"],
        200,
        "{resp}\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    body_bytes(&resp)
}

#[tokio::test]
#[ignore = "needs an unpacked release bundle in BRS_BUNDLE_DIR (scripts/check-bundle runs it)"]
async fn bundled_function_serves_and_reports_its_cold_start() {
    let bundle = PathBuf::from(
        std::env::var_os("BRS_BUNDLE_DIR").expect("BRS_BUNDLE_DIR names an unpacked bundle"),
    );
    let exe = bundle.join("bin/brs-lambda");
    assert!(exe.is_file(), "{} is missing", exe.display());

    let dir = tempfile::tempdir().expect("tempdir");
    let model_dir = dir.path().join("models");
    // The light generator at 256 px (40 MiB of f32 weights): what the deployment serves.
    let config = ModelConfig {
        img_size: 256,
        ch: 64,
        n_res: 4,
        light: true,
        img_ch: 3,
        ..ModelConfig::default()
    };
    brs_model::translator::write_random_export(&model_dir, &config, 7, 1).expect("model");
    let log = dir.path().join("brs-lambda.log");
    let api = RuntimeApi::start().await;
    let timeout = Duration::from_secs(300);

    let start = Instant::now();
    let passed: Vec<(&str, String)> = ["BRS_ENGINE", "BRS_LAMBDA_CONFIG"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k, v)))
        .collect();
    let mut function = spawn_function_at(
        &exe,
        &api,
        &model_dir,
        &dir.path().join("results"),
        &log,
        &passed,
    );
    let event = |seed| {
        url_event(
            "POST",
            "/v1/translate",
            "format=png",
            Some("image/png"),
            &photo(seed),
        )
    };
    let first = translated_png(api.invoke(event(1), timeout).await, &log);
    let cold = start.elapsed();
    let warm_start = Instant::now();
    let second = translated_png(api.invoke(event(2), timeout).await, &log);
    let warm = warm_start.elapsed();

    for png in [&first, &second] {
        let out = image::load_from_memory_with_format(png, image::ImageFormat::Png).expect("png");
        assert_eq!((out.width(), out.height()), (256, 256));
    }
    assert!(
        function.try_wait().expect("status").is_none(),
        "the function keeps running between invocations"
    );
    function.kill().await.expect("stop brs-lambda");
    // Read by scripts/check-bundle; a measurement, not an assertion.
    let engine_line = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.split_once("engine=").map(|(_, e)| e.to_string()))
        .unwrap_or_default();
    println!(
        "brs-lambda bundle: cold start to first response {:.2} s, next warm request {:.2} s (engine={engine_line})",
        cold.as_secs_f64(),
        warm.as_secs_f64()
    );
}
