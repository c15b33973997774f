//! Freed memory goes back to the kernel once the inference workers have been idle for
//! `IDLE_BEFORE_RELEASE`, and never while requests keep coming (it is what the next forward pass
//! reuses).

use std::time::{Duration, Instant};

use brs_serve::IDLE_BEFORE_RELEASE;

use crate::common::{Server, client, png};

async fn releases(s: &Server) -> f64 {
    s.metric("brs_memory_releases_total{outcome=\"released\"}")
        .await
        + s.metric("brs_memory_releases_total{outcome=\"nothing\"}")
            .await
}

async fn wait_for_releases(s: &Server, want: f64, limit: Duration) -> Instant {
    let t = Instant::now();
    loop {
        if releases(s).await >= want {
            return Instant::now();
        }
        assert!(t.elapsed() < limit, "no release {limit:?} after going idle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freed_memory_goes_back_after_an_idle_spell_never_between_requests() {
    let s = Server::start(|_| {}).await;
    let limit = IDLE_BEFORE_RELEASE * 3;
    // Start-up (loading, warm-up) is followed by an idle spell.
    wait_for_releases(&s, 1.0, limit).await;
    let before = releases(&s).await;

    let c = client();
    let busy_for = IDLE_BEFORE_RELEASE + IDLE_BEFORE_RELEASE / 2;
    let started = Instant::now();
    let mut sent = 0u8;
    while started.elapsed() < busy_for {
        // Distinct bytes: a cached result would run no forward pass.
        let mut body = png(64, 64);
        body.push(sent);
        sent = sent.wrapping_add(1);
        let r = c
            .post(s.url("/v1/translate"))
            .header("content-type", "image/png")
            .body(body)
            .send()
            .await
            .expect("translate");
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let last_request = Instant::now();
    assert_eq!(
        releases(&s).await,
        before,
        "memory was given back while requests kept coming"
    );

    let released_at = wait_for_releases(&s, before + 1.0, limit).await;
    let idle = released_at.duration_since(last_request);
    assert!(
        idle >= IDLE_BEFORE_RELEASE - Duration::from_millis(300),
        "released after {idle:?} idle"
    );
    assert!(
        s.metric("brs_memory_releases_total{outcome=\"released\"}")
            .await
            >= 1.0,
        "glibc never gave anything back"
    );
    s.stop().await;
}
