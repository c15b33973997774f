//! Jobs on S3 + SQS (moto on loopback): a worker killed mid-job loses nothing, a poison image ends
//! in the dead-letter queue and failed, a store outage delays a job without losing it, and any
//! instance answers for a job it does not run.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName as A;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

use crate::common::aws::{AwsRole, Flaky, LocalAws, spawn_worker};
use crate::common::{Kill, Server, client, error_code, get_json, png, slow_model};

async fn submit(s: &Server, n: u8) -> String {
    let form = (0..n).fold(Form::new(), |f, i| {
        let mut b = png(48, 48);
        b.push(i);
        f.part("image", Part::bytes(b).file_name(format!("{i}.png")))
    });
    let r = client()
        .post(s.url("/v1/jobs"))
        .multipart(form)
        .send()
        .await
        .expect("send");
    let status = r.status();
    let job: serde_json::Value = r.json().await.expect("json");
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    job["id"].as_str().expect("id").to_string()
}

async fn wait_done(s: &Server, id: &str, limit: Duration) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let v = get_json(s.url(&format!("/v1/jobs/{id}"))).await;
        if v["status"] == "done" {
            return v;
        }
        assert!(t.elapsed() < limit, "job not done within {limit:?}: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn not_visible(aws: &LocalAws) -> u64 {
    aws.count(&aws.queue_url, A::ApproximateNumberOfMessagesNotVisible)
        .await
}

/// Messages not yet deleted: waiting or being worked on.
async fn in_queue(aws: &LocalAws) -> u64 {
    aws.count(&aws.queue_url, A::ApproximateNumberOfMessages)
        .await
        + not_visible(aws).await
}

/// The web tier only (it takes jobs, signing as the HTTP function's role, and runs none) on a
/// model slow enough that a worker is surely mid-image when the test acts, and one worker.
async fn api_and_worker(aws: &LocalAws, worker: &str) -> (Server, Kill) {
    let endpoint = aws.moto.endpoint();
    let api = Server::start_on(
        &slow_model(16, 2),
        |c| aws.configure(c, &endpoint, false),
        Some(aws.backends(&endpoint, AwsRole::LambdaApi)),
    )
    .await;
    let w = spawn_worker(aws, &api, worker, &[]);
    (api, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing() {
    let aws = LocalAws::start(3, 4).await;
    let (api, mut w1) = api_and_worker(&aws, "w1").await;
    let id = submit(&api, 8).await;
    // Kill the first worker with SIGKILL while it holds messages: after it finished one image,
    // so it is surely running.
    let t = Instant::now();
    loop {
        let v = get_json(api.url(&format!("/v1/jobs/{id}"))).await;
        if v["done"].as_u64().unwrap_or(0) >= 1 && not_visible(&aws).await >= 1 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the first worker never finished an image: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w1.0.kill().expect("SIGKILL");
    let killed_at = Instant::now();
    let _w2 = spawn_worker(&aws, &api, "w2", &[]);
    let v = wait_done(&api, &id, Duration::from_secs(180)).await;
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 8);
    assert!(items.iter().all(|i| i["status"] == "done"), "{v}");
    // The images the dead worker held came back after their visibility timeout.
    let redelivered = items
        .iter()
        .filter(|i| i["attempts"].as_u64().unwrap_or(1) >= 2)
        .count();
    assert!(redelivered >= 1, "no image was redelivered: {v}");
    // Exactly once: one result and one state per image, however many deliveries.
    let results = aws.keys("results/").await;
    let ours = results.iter().filter(|k| k.contains(&id)).count();
    assert_eq!(ours, 8, "{results:?}");
    let states = aws
        .keys("jobs/")
        .await
        .iter()
        .filter(|k| k.contains("/items/"))
        .count();
    assert_eq!(states, 8);
    // The S3 store answers with a redirect to a presigned URL of the result. (moto cannot serve
    // a presigned URL while it enforces IAM: it looks for an Authorization header; the results
    // are in the bucket, counted above.)
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for item in items {
        let url = item["result_url"].as_str().expect("url");
        let r = no_redirects.get(api.url(url)).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT, "{url}");
        let to = r.headers()["location"].to_str().expect("location");
        let name = url.rsplit('/').next().expect("name");
        assert!(to.contains(name) && to.contains("X-Amz-Signature="), "{to}");
    }
    assert!(killed_at.elapsed() < Duration::from_secs(180));
    assert_eq!(aws.dead_letters().await, 0);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_image_ends_failed_and_dead_lettered() {
    let aws = LocalAws::start(2, 2).await;
    let endpoint = aws.moto.endpoint();
    // Every translation takes longer than this server allows: a failure that retrying does
    // not cure. A job image may wait request_timeout x queue_depth (3.2 ms here), which a tiny
    // model's forward pass can beat on a fast CPU: the 256 px model cannot.
    let api = Server::start_on(
        &slow_model(16, 2),
        |c| {
            aws.configure(c, &endpoint, true);
            c.request_timeout = Duration::from_micros(100);
        },
        Some(aws.backends(&endpoint, AwsRole::Serve)),
    )
    .await;
    let id = submit(&api, 1).await;
    let v = wait_done(&api, &id, Duration::from_secs(60)).await;
    let item = &v["items"][0];
    assert_eq!(item["status"], "failed", "{v}");
    assert_eq!(item["error"]["code"], "timeout");
    assert!(
        item["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("gave up after 2 attempts")),
        "{v}"
    );
    assert_eq!(item["attempts"], 2);
    // The redrive policy moves it once it is received past its limit.
    let t = Instant::now();
    while aws.dead_letters().await < 1 {
        assert!(t.elapsed() < Duration::from_secs(30), "not dead-lettered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_delays_a_job_but_loses_nothing() {
    let aws = LocalAws::start(5, 20).await;
    let proxy = Flaky::start(aws.moto.port).await;
    let api = Server::start_on(
        &crate::common::tiny_config(),
        |c| aws.configure(c, &proxy.endpoint(), true),
        Some(aws.backends(&proxy.endpoint(), AwsRole::Serve)),
    )
    .await;
    // Taken while the store answers; translated after it comes back.
    proxy.set_up(false);
    let r = client()
        .post(api.url("/v1/jobs"))
        .multipart(Form::new().part("image", Part::bytes(png(40, 40)).file_name("a.png")))
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "no store, no job"
    );
    assert_eq!(error_code(r).await, "store_unavailable");
    proxy.set_up(true);
    let id = submit(&api, 3).await;
    proxy.set_up(false);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = client().get(api.url("/readyz")).send().await.expect("send");
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready while the store is down"
    );
    proxy.set_up(true);
    let v = wait_done(&api, &id, Duration::from_secs(90)).await;
    assert!(
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["status"] == "done"),
        "{v}"
    );
    api.wait_ready(Duration::from_secs(15)).await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_deleted_mid_translation_leaves_nothing() {
    let aws = LocalAws::start(5, 4).await;
    let (api, _w) = api_and_worker(&aws, "w").await;
    let id = submit(&api, 6).await;
    // Delete once the worker has finished an image, so it holds the job's manifest and is
    // surely mid-job.
    let t = Instant::now();
    loop {
        let v = get_json(api.url(&format!("/v1/jobs/{id}"))).await;
        if v["done"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no image done: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client()
        .delete(api.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Let the worker finish every message it was given.
    let t = Instant::now();
    while in_queue(&aws).await > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "messages never settled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left: Vec<String> = aws
        .keys("")
        .await
        .into_iter()
        .filter(|k| k.contains(&id))
        .collect();
    assert!(left.is_empty(), "the deleted job came back: {left:?}");
    let r = client()
        .get(api.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(aws.dead_letters().await, 0);
    api.stop().await;
}
