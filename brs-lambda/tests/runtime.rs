//! The brs-lambda binary against a local stand-in of the Lambda runtime API, with a real tiny model.

mod common;

use std::io::Cursor;
use std::time::Duration;

use brs_model::ModelConfig;
use brs_model::config::Flavour;
use common::{Outcome, RuntimeApi, body_bytes, header, spawn_function, url_event};

/// A small photo-like PNG: a gradient, so the model sees varied input.
fn png(side: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 2) as u8, ((x + y) % 256) as u8])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode png");
    out
}

fn response(outcome: Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Response(v) => v,
        Outcome::Error(e) => panic!("invocation failed: {e}"),
    }
}

#[tokio::test]
async fn function_url_events_are_served_by_the_router() {
    function_url_events_are_served(Flavour::Pytorch).await;
}

/// A model of the TensorFlow flavour (an imported release of the authors' code) is served the
/// same way.
#[tokio::test]
async fn a_tensorflow_flavour_model_is_served_the_same_way() {
    function_url_events_are_served(Flavour::Tensorflow).await;
}

async fn function_url_events_are_served(flavour: Flavour) {
    let dir = tempfile::tempdir().expect("tempdir");
    let model_dir = dir.path().join("models");
    let config = ModelConfig {
        img_size: 96,
        ch: 4,
        n_res: 1,
        light: true,
        img_ch: 3,
        flavour,
        ..ModelConfig::default()
    };
    brs_model::translator::write_random_export(&model_dir, &config, 7, 1).expect("tiny model");
    let log = dir.path().join("brs-lambda.log");
    let api = RuntimeApi::start().await;
    let mut function = spawn_function(&api, &model_dir, &dir.path().join("results"), &log);
    let timeout = Duration::from_secs(60);
    let show_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // Init waits for warm-up, so the very first invocation already finds the models ready.
    let ready = response(
        api.invoke(url_event("GET", "/readyz", "", None, b""), timeout)
            .await,
    );
    assert_eq!(ready["statusCode"], 200, "{ready}\n{}", show_log());

    let health = response(
        api.invoke(url_event("GET", "/healthz", "", None, b""), timeout)
            .await,
    );
    assert_eq!(health["statusCode"], 200, "{health}\n{}", show_log());
    let body: serde_json::Value = serde_json::from_slice(&body_bytes(&health)).expect("json body");
    assert_eq!(body["status"], "ok");

    let photo = png(120);
    let event = url_event(
        "POST",
        "/v1/translate",
        "size=64&format=png",
        Some("image/png"),
        &photo,
    );
    let translated = response(api.invoke(event, timeout).await);
    assert_eq!(
        translated["statusCode"],
        200,
        "{translated}\n{}",
        show_log()
    );
    assert_eq!(
        translated["isBase64Encoded"], true,
        "binary bodies travel as base64"
    );
    assert_eq!(header(&translated, "content-type"), Some("image/png"));
    assert_eq!(header(&translated, "x-brs-cache"), Some("miss"));
    let out =
        image::load_from_memory_with_format(&body_bytes(&translated), image::ImageFormat::Png)
            .expect("png out");
    assert_eq!((out.width(), out.height()), (64, 64));

    // The same photo again is served from the result store on the (stand-in) EFS directory.
    let event = url_event(
        "POST",
        "/v1/translate",
        "size=64&format=png",
        Some("image/png"),
        &photo,
    );
    let again = response(api.invoke(event, timeout).await);
    assert_eq!(header(&again, "x-brs-cache"), Some("hit"));
    assert_eq!(body_bytes(&again), body_bytes(&translated));
    assert_ne!(
        header(&again, "x-brs-result-key"),
        header(&translated, "x-brs-result-key"),
        "a hit is stored again under a name of its own"
    );

    // Another caller is another client: the function URL's sourceIp, not the runtime's loopback
    // socket, names it (else every caller would share one tenant and one rate limit).
    let mut event = url_event(
        "POST",
        "/v1/translate",
        "size=64&format=png",
        Some("image/png"),
        &photo,
    );
    event["requestContext"]["http"]["sourceIp"] = serde_json::json!("198.51.100.9");
    let other = response(api.invoke(event, timeout).await);
    assert_eq!(other["statusCode"], 200, "{other}\n{}", show_log());
    assert_eq!(
        header(&other, "x-brs-cache"),
        Some("miss"),
        "another caller's photo is not a hit on this caller's result"
    );

    let event = url_event(
        "POST",
        "/v1/translate",
        "style=nope",
        Some("image/png"),
        &photo,
    );
    let unknown = response(api.invoke(event, timeout).await);
    assert_eq!(unknown["statusCode"], 404, "{unknown}");
    let err: serde_json::Value = serde_json::from_slice(&body_bytes(&unknown)).expect("json error");
    assert!(
        err["error"].is_object(),
        "errors keep brs-serve's JSON shape: {err}"
    );

    let empty = response(
        api.invoke(
            url_event("POST", "/v1/translate", "", Some("image/png"), b""),
            timeout,
        )
        .await,
    );
    assert_eq!(empty["statusCode"], 422, "{empty}");

    assert_eq!(
        api.unknown_ids(),
        0,
        "every answer named a request id that was handed out"
    );
    assert!(
        function.try_wait().expect("status").is_none(),
        "the function keeps running between invocations"
    );
    function.kill().await.expect("stop brs-lambda");
}

#[tokio::test]
async fn a_missing_model_directory_fails_init_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("brs-lambda.log");
    let api = RuntimeApi::start().await;
    let mut function = spawn_function(
        &api,
        &dir.path().join("no-such-models"),
        &dir.path().join("results"),
        &log,
    );
    let status = tokio::time::timeout(Duration::from_secs(30), function.wait())
        .await
        .expect("init fails promptly")
        .expect("exit status");
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("brs-lambda: loading the models"), "{text}");
}
