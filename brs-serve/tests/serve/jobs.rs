//! Jobs: several images, status, Server-Sent Events, stored results, repeated images from the store.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

use crate::common::{
    Server, client, decode, error_code, fixture_bytes, get_json, get_text, png, slow_model,
};

fn form(images: &[(&str, Vec<u8>)]) -> Form {
    images.iter().fold(Form::new(), |f, (name, b)| {
        f.part("image", Part::bytes(b.clone()).file_name(name.to_string()))
    })
}

/// POSTs a job to `url` (a /v1/jobs URL with its query), expects 202, returns the job's JSON.
async fn submit(url: String, images: &[(&str, Vec<u8>)]) -> serde_json::Value {
    let r = client()
        .post(url)
        .multipart(form(images))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_streams_events_and_serves_results() {
    let s = Server::start(|c| c.max_job_images = 4).await;
    let c = client();
    let images = [
        ("astronaut.png", fixture_bytes("astronaut.png")),
        ("coffee.png", fixture_bytes("coffee.png")),
        ("broken.png", b"\x89PNG\r\n\x1a\nnope".to_vec()),
    ];
    let job = submit(s.url("/v1/jobs?format=webp&size=48"), &images).await;
    let id = job["id"].as_str().expect("id").to_string();
    assert_eq!(job["total"], 3);

    // The stream ends after `done`; items may have finished before it opened and still appear.
    let events = c
        .get(s.url(&format!("/v1/jobs/{id}/events")))
        .send()
        .await
        .expect("send");
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let text = events.text().await.expect("stream");
    assert_eq!(text.matches("event: item").count(), 3, "{text}");
    assert_eq!(text.matches("event: done").count(), 1, "{text}");

    let status = get_json(s.url(&format!("/v1/jobs/{id}"))).await;
    assert_eq!(status["status"], "done");
    let items = status["items"].as_array().expect("items");
    assert_eq!(items[2]["status"], "failed");
    assert_eq!(items[2]["error"]["code"], "corrupt");
    assert_eq!(items[2]["filename"], "broken.png");
    for item in &items[..2] {
        assert_eq!(item["status"], "done");
        assert_eq!(item["cached"], false);
        let url = item["result_url"].as_str().expect("url");
        let r = c.get(s.url(url)).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "image/webp");
        assert_eq!(
            decode(&r.bytes().await.expect("body")),
            (image::ImageFormat::WebP, 48, 48)
        );
    }
    let inferred = s
        .metric("brs_images_translated_total{style=\"default\"}")
        .await;
    assert_eq!(inferred, 2.0);

    // The same astronaut again, as a job and as a direct request: no inference at all.
    let job = submit(s.url("/v1/jobs?format=webp&size=48"), &images[..1]).await;
    let id2 = job["id"].as_str().expect("id");
    let text = get_text(s.url(&format!("/v1/jobs/{id2}/events"))).await;
    assert!(text.contains("\"cached\":true"), "{text}");
    let r = c
        .post(s.url("/v1/translate?format=webp&size=48"))
        .header("content-type", "image/png")
        .body(images[0].1.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-brs-cache"], "hit");
    // A hit never answers with the job's result name: that names the job, a capability.
    let key = r.headers()["x-brs-result-key"].to_str().expect("key");
    assert!(!key.contains(&id) && !key.contains(id2), "{key}");
    assert_eq!(
        s.metric("brs_images_translated_total{style=\"default\"}")
            .await,
        2.0
    );
    // Every image's drain guard is released (just after its state is published, so a client
    // that saw `done` may look a moment before the last one is).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while s.state.drain().pending_jobs() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "job images still pending"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_requests_are_validated() {
    let s = Server::start(|c| c.max_job_images = 2).await;
    let c = client();
    let three = [("a", png(20, 20)), ("b", png(21, 20)), ("c", png(22, 20))];
    let r = c
        .post(s.url("/v1/jobs"))
        .multipart(form(&three))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "bad_request");
    let r = c
        .post(s.url("/v1/jobs"))
        .multipart(Form::new().text("x", "y"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .post(s.url("/v1/jobs"))
        .header("content-type", "image/png")
        .body(png(8, 8))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = c
        .post(s.url("/v1/jobs?style=nope"))
        .multipart(form(&three[..1]))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "unknown_style");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_visible_from_every_instance_sharing_the_results_dir() {
    // Two instances behind one load balancer, one results directory (EFS in production).
    let first = Server::start(|_| {}).await;
    let shared = first.dir.path().join("results");
    let second = Server::start(|c| {
        c.store.path = Some(shared.clone());
    })
    .await;
    let c = client();
    let images = [("one.png", png(40, 30)), ("two.png", png(30, 40))];
    let job = submit(first.url("/v1/jobs"), &images).await;
    let id = job["id"].as_str().expect("id");

    // The other instance streams the job it does not run, from the store.
    let text = get_text(second.url(&format!("/v1/jobs/{id}/events"))).await;
    assert_eq!(text.matches("event: item").count(), 2, "{text}");
    assert_eq!(text.matches("event: done").count(), 1, "{text}");
    let status = get_json(second.url(&format!("/v1/jobs/{id}"))).await;
    assert_eq!(
        (status["status"].as_str(), status["done"].as_u64()),
        (Some("done"), Some(2))
    );
    for item in status["items"].as_array().expect("items") {
        let url = item["result_url"].as_str().expect("result url");
        let r = c.get(second.url(url)).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK, "{url}");
    }
    // Unknown and malformed ids are 404s on both, without touching other files.
    for s in [&first, &second] {
        for bad in ["0123456789abcdef01234567", "..%2F..%2Fetc%2Fpasswd", "nope"] {
            let r = c
                .get(s.url(&format!("/v1/jobs/{bad}")))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{bad}");
            assert_eq!(error_code(r).await, "unknown_job");
        }
    }
    // The second instance ran nothing: every image was translated by the first.
    let series = "brs_images_translated_total{style=\"default\"}";
    assert_eq!(
        (first.metric(series).await, second.metric(series).await),
        (2.0, 0.0)
    );
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_flood_leaves_room_for_interactive_requests() {
    // A generator slow enough that job images pile up behind it.
    let model = slow_model(8, 2);
    let s = Server::start_with(&model, |c| {
        c.queue_depth = 4;
        c.job_queue_share = 0.5;
        c.max_batch = 1;
        c.max_job_images = 12;
    })
    .await;
    for job in 0..2u8 {
        let images: Vec<(String, Vec<u8>)> = (0..12u8)
            .map(|i| {
                let mut b = png(64, 64);
                b.extend_from_slice(&[job, i]);
                (format!("{job}-{i}.png"), b)
            })
            .collect();
        let named: Vec<(&str, Vec<u8>)> = images
            .iter()
            .map(|(n, b)| (n.as_str(), b.clone()))
            .collect();
        submit(s.url("/v1/jobs"), &named).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // 24 job images wait, yet jobs hold at most half the queue: interactive requests find room.
    for i in 0..3u8 {
        let mut body = png(64, 64);
        body.push(i);
        let r = client()
            .post(s.url("/v1/translate"))
            .header("content-type", "image/png")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK, "interactive request {i}");
    }
    assert!(
        s.state.drain().pending_jobs() > 0,
        "the jobs were still running: the test measured what it meant to"
    );
    s.stop().await;
}
