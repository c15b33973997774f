//! /v1/translate, the read-only endpoints and every documented error.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

use brs_model::ModelConfig;
use brs_model::config::Flavour;

use crate::common::{
    Server, client, decode, error_code, fixture_bytes, get_json, png, slow_model, tiny_config,
};
use brs_testkit::images::png_bomb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translate_raw_and_multipart_with_formats_sizes_and_cache() {
    let s = Server::start(|_| {}).await;
    let c = client();
    let astronaut = fixture_bytes("astronaut.png");

    let r = c
        .post(s.url("/v1/translate"))
        .header("content-type", "image/png")
        .body(astronaut.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["x-brs-cache"], "miss");
    let key = r.headers()["x-brs-result-key"]
        .to_str()
        .expect("key")
        .to_string();
    let first = r.bytes().await.expect("body");
    assert_eq!(decode(&first), (image::ImageFormat::Png, 96, 96));
    let images = s
        .metric("brs_images_translated_total{style=\"default\"}")
        .await;
    assert_eq!(images, 1.0);

    // The same photo again: served from the result store, no inference.
    let r = c
        .post(s.url("/v1/translate"))
        .header("content-type", "image/png")
        .body(astronaut.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-brs-cache"], "hit");
    assert_eq!(r.bytes().await.expect("body"), first);
    assert_eq!(
        s.metric("brs_images_translated_total{style=\"default\"}")
            .await,
        1.0
    );
    assert_eq!(
        s.metric("brs_result_cache_total{outcome=\"hit\"}").await,
        1.0
    );
    let stored = c
        .get(s.url(&format!("/v1/results/{key}")))
        .send()
        .await
        .expect("get");
    assert_eq!(stored.status(), StatusCode::OK);
    assert_eq!(stored.bytes().await.expect("body"), first);

    for (format, size, want) in [
        ("jpeg", 64, image::ImageFormat::Jpeg),
        ("webp", 128, image::ImageFormat::WebP),
    ] {
        let form = Form::new().part(
            "image",
            Part::bytes(fixture_bytes("grace_hopper.jpg")).file_name("g.jpg"),
        );
        let r = c
            .post(s.url(&format!(
                "/v1/translate?format={format}&size={size}&style=default"
            )))
            .multipart(form)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK, "{format}");
        let b = r.bytes().await.expect("body");
        assert_eq!(decode(&b), (want, size, size));
    }
    // A grayscale PNG works too (converted to RGB).
    let r = c
        .post(s.url("/v1/translate"))
        .header("content-type", "image/png")
        .body(fixture_bytes("camera.png"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_its_status_and_json_code() {
    let s = Server::start(|c| {
        c.max_upload_bytes = 300_000;
        c.max_pixels = 250_000;
    })
    .await;
    let c = client();
    let check = |r: reqwest::Response, status: StatusCode, code: &'static str| async move {
        assert_eq!(r.status(), status, "expected {code}");
        assert_eq!(error_code(r).await, code);
    };
    // Over the upload limit by a little: the server answers 413 as soon as the limit is passed
    // and closes the connection, so a body much larger than the socket buffers would make the
    // client's own write fail before it reads the answer (a flake seen in CI with 790 kB).
    let oversized = vec![0u8; 300_000 + 1024];
    let mut cut = png(64, 64);
    cut.truncate(cut.len() - 30);
    let (unprocessable, bad) = (StatusCode::UNPROCESSABLE_ENTITY, StatusCode::BAD_REQUEST);
    // (content type, body, query): status, code.
    let posts: Vec<(&str, Vec<u8>, &str, StatusCode, &str)> = vec![
        (
            "image/png",
            oversized.clone(),
            "",
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        // Types.
        (
            "text/plain",
            b"hi".to_vec(),
            "",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "image/png",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec(),
            "",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        // Undecodable content.
        ("image/png", Vec::new(), "", unprocessable, "empty"),
        (
            "image/jpeg",
            b"definitely not a jpeg".to_vec(),
            "",
            unprocessable,
            "undecodable",
        ),
        ("image/png", cut, "", unprocessable, "corrupt"),
        // 600 x 600 = 360,000 pixels > 250,000: refused from the header (a decompression bomb).
        (
            "image/png",
            png_bomb(600, 600),
            "",
            unprocessable,
            "too_many_pixels",
        ),
        // Parameters.
        (
            "image/png",
            png(32, 32),
            "?style=nope",
            StatusCode::NOT_FOUND,
            "unknown_style",
        ),
        ("image/png", png(32, 32), "?format=gif", bad, "bad_request"),
        ("image/png", png(32, 32), "?size=5", bad, "bad_request"),
        ("image/png", png(32, 32), "?colour=red", bad, "bad_request"),
        ("image/png", png(32, 32), "?crop=face", bad, "bad_request"),
    ];
    for (ct, body, q, status, code) in posts {
        let r = c
            .post(s.url(&format!("/v1/translate{q}")))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .expect("send");
        check(r, status, code).await;
    }
    // Multipart: too large, or without an `image` field.
    for (form, status, code) in [
        (
            Form::new().part("image", Part::bytes(oversized)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            Form::new().part("photo", Part::bytes(png(8, 8))),
            bad,
            "bad_request",
        ),
    ] {
        let r = c
            .post(s.url("/v1/translate"))
            .multipart(form)
            .send()
            .await
            .expect("send");
        check(r, status, code).await;
    }
    // Unknown things.
    let zeros = format!("/v1/results/{}.png", "0".repeat(64));
    for (path, code) in [
        ("/v2/nothing", "no_route"),
        ("/v1/results/abc.png", "unknown_result"),
        (zeros.as_str(), "unknown_result"),
        ("/v1/jobs/nope", "unknown_job"),
    ] {
        let r = c.get(s.url(path)).send().await.expect("send");
        check(r, StatusCode::NOT_FOUND, code).await;
    }
    // Still healthy after all that.
    let r = c
        .post(s.url("/v1/translate"))
        .header("content-type", "image/png")
        .body(png(100, 80))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        s.metric("brs_http_requests_total{route=\"/v1/translate\",status=\"422\"}")
            .await
            >= 4.0
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_with_retry_after_and_slow_answers_504() {
    // A bigger generator so requests pile up behind it.
    let model = slow_model(8, 2);
    let s = Server::start_with(&model, |c| {
        c.queue_depth = 1;
        c.max_batch = 1;
    })
    .await;
    let c = client();
    let body = png(256, 256);
    let mut tasks = Vec::new();
    for i in 0..24u8 {
        let (c, url) = (c.clone(), s.url("/v1/translate"));
        // Distinct bytes so the result store cannot answer.
        let mut b = body.clone();
        b.extend_from_slice(&[i; 4]);
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(url)
                .header("content-type", "image/png")
                .body(b)
                .send()
                .await
                .expect("send");
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or("").to_string());
            (r.status(), retry)
        }));
    }
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        match t.await.expect("join") {
            (StatusCode::OK, _) => ok += 1,
            (StatusCode::SERVICE_UNAVAILABLE, retry) => {
                assert_eq!(retry.as_deref(), Some("1"));
                busy += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(ok >= 1 && busy >= 1, "ok {ok}, 503 {busy}");
    s.stop().await;

    let s = Server::start(|c| c.request_timeout = Duration::from_micros(500)).await;
    let r = client()
        .post(s.url("/v1/translate"))
        .header("content-type", "image/png")
        .body(png(64, 64))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error_code(r).await, "timeout");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_health_metrics_openapi_and_page() {
    let s = Server::start(|_| {}).await;
    let c = client();
    let get = |p: &str| c.get(s.url(p)).send();
    assert_eq!(
        get("/healthz").await.expect("send").status(),
        StatusCode::OK
    );
    assert_eq!(get("/readyz").await.expect("send").status(), StatusCode::OK);

    let m: serde_json::Value = get("/v1/models")
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(m["default_style"], "default");
    let style = &m["styles"][0];
    assert_eq!(style["name"], "default");
    assert_eq!(style["ready"], true);
    assert_eq!(style["model"]["iteration"], 1);
    assert_eq!(style["model"]["light"], true);
    assert_eq!(style["model"]["flavour"], "pytorch");
    assert_eq!(style["model"]["img_size"], 96);
    assert_eq!(style["model"]["checkpoint"], "export-0000001");
    // The default precision, auto: bfloat16 where the CPU multiplies it natively.
    let native = brs_model::precision::cpu_has_native_bf16();
    assert_eq!(
        style["model"]["precision"],
        if native { "bf16" } else { "f32" }
    );
    assert!(
        style["model"]["created"]
            .as_str()
            .is_some_and(|c| c.contains('T'))
    );
    let version = style["model"]["version"]
        .as_str()
        .expect("version")
        .to_string();

    let r = client()
        .post(s.url("/v1/translate"))
        .header("content-type", "image/png")
        .body(png(50, 50))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let r = get("/metrics").await.expect("send");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain")
    );
    let text = r.text().await.expect("text");
    for needle in [
        "brs_http_requests_total{route=\"/v1/translate\",status=\"200\"} 1",
        "brs_http_request_duration_seconds_bucket{route=\"/v1/translate\",le=\"+Inf\"} 1",
        "brs_queue_depth{style=\"default\"} 0",
        "brs_batch_size_count{style=\"default\"} 1",
        "brs_inference_seconds_count{style=\"default\"} 1",
        "# TYPE brs_model_reloads_total counter",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(text.contains(&format!(
        "brs_model_info{{style=\"default\",version=\"{version}\",iteration=\"1\",engine=\"torch\",precision=\"{}\"}} 1",
        if native { "bf16" } else { "f32" }
    )));

    let api: serde_json::Value = get("/openapi.json")
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(api["openapi"], "3.1.0");
    for p in [
        "/v1/translate",
        "/v1/jobs",
        "/v1/jobs/{id}/events",
        "/v1/results/{name}",
        "/v1/models",
        "/readyz",
    ] {
        assert!(api["paths"][p].is_object(), "{p} documented");
    }
    let page = get("/").await.expect("send");
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/html")
    );
    assert!(page.text().await.expect("text").contains("type=\"file\""));

    // Draining from code: readiness fails at once.
    s.state.drain().start();
    let r = get("/readyz").await.expect("send");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(r).await, "draining");
    tokio::time::sleep(Duration::from_millis(10)).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crop_face_uses_the_detector() {
    let s = Server::start(|c| c.detector = Some(brs_image::detect::DetectorSpec::default())).await;
    let c = client();
    let r = c
        .post(s.url("/v1/translate?crop=face&size=64"))
        .header("content-type", "image/jpeg")
        .body(fixture_bytes("grace_hopper.jpg"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(decode(&r.bytes().await.expect("body")).1, 64);
    // A picture without a face: a clear 422, not a silent whole-image translation.
    let r = c
        .post(s.url("/v1/translate?crop=face"))
        .header("content-type", "image/png")
        .body(png(200, 200))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r).await, "no_face");
    s.stop().await;
}

/// A model of the TensorFlow flavour (an imported release of the authors' code) is served like
/// any other: /v1/models names its flavour, and photos translate.
#[tokio::test]
async fn a_tensorflow_flavour_model_is_served_like_any() {
    let model = ModelConfig {
        flavour: Flavour::Tensorflow,
        ..tiny_config()
    };
    let s = Server::start_with(&model, |_| {}).await;
    let models = get_json(s.url("/v1/models")).await;
    assert_eq!(models["styles"][0]["model"]["flavour"], "tensorflow");
    let r = client()
        .post(s.url("/v1/translate?format=png&size=64"))
        .header("content-type", "image/png")
        .body(png(120, 90))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let (format, w, h) = decode(&r.bytes().await.expect("body"));
    assert_eq!((format, w, h), (image::ImageFormat::Png, 64, 64));
    s.stop().await;
}
