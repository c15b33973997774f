//! The lifecycle watcher against local IMDSv2 and Auto Scaling stand-ins on loopback.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use brs_aws::{AutoScaling, Imds, LifecycleState};
use common::{GROUP, HOOK, INSTANCE, Rig, TestDrain, join, wait_until};

const COMPLETE: &str = "CompleteLifecycleAction";
const HEARTBEAT: &str = "RecordLifecycleActionHeartbeat";
const PROTECT: &str = "SetInstanceProtection";

#[tokio::test]
async fn terminated_drains_then_completes_exactly_once() {
    let rig = Rig::start().await;
    let drain = TestDrain::new(3, Duration::from_millis(200));
    let watcher = rig.spawn(drain.clone());
    rig.wait_polls(3).await;
    assert_eq!(
        drain.begin_calls.load(Ordering::SeqCst),
        0,
        "no drain while InService"
    );
    assert!(
        rig.asg.calls().is_empty(),
        "nothing to tell Auto Scaling while InService and idle"
    );

    rig.imds.set_lifecycle_state(Some("Terminated"));
    join(watcher, Duration::from_secs(10)).await;

    assert_eq!(drain.begin_calls.load(Ordering::SeqCst), 1);
    let completes = rig.asg.accepted(COMPLETE);
    assert_eq!(completes.len(), 1, "{:?}", rig.asg.calls());
    assert_eq!(rig.asg.attempts(COMPLETE), 1);
    let p = &completes[0].params;
    assert_eq!(p["LifecycleActionResult"], "CONTINUE");
    assert_eq!(p["LifecycleHookName"], HOOK);
    assert_eq!(p["AutoScalingGroupName"], GROUP);
    assert_eq!(p["InstanceId"], INSTANCE);
    let zero = drain.first_zero().expect("outstanding reached 0");
    assert!(
        completes[0].at >= zero,
        "completed before outstanding work reached 0"
    );
    let started = drain.drain_started().expect("drain started");
    assert!(
        zero.duration_since(started) >= Duration::from_millis(550),
        "work took its 3 steps"
    );
    assert_eq!(
        rig.asg.attempts(HEARTBEAT),
        0,
        "a drain shorter than the heartbeat interval sends none"
    );

    let s = rig.stats.snapshot();
    assert_eq!(
        (
            s.drains_started,
            s.lifecycle_completed,
            s.lifecycle_complete_errors
        ),
        (1, 1, 0)
    );
    assert_eq!((s.drain_timeouts, s.lifecycle_state), (0, 2));
}

#[tokio::test]
async fn heartbeats_are_sent_while_draining_takes_long() {
    let mut rig = Rig::start().await;
    rig.cfg.heartbeat_interval_secs = Some(1);
    let drain = TestDrain::new(6, Duration::from_millis(500));
    let watcher = rig.spawn(drain.clone());
    rig.wait_polls(1).await;
    rig.imds.set_lifecycle_state(Some("Terminated"));
    join(watcher, Duration::from_secs(15)).await;

    let beats = rig.asg.accepted(HEARTBEAT);
    assert!(
        (2..=3).contains(&beats.len()),
        "3 s of draining at 1 s intervals: {} heartbeats",
        beats.len()
    );
    let started = drain.drain_started().expect("drain started");
    let zero = drain.first_zero().expect("drained");
    for beat in &beats {
        assert!(
            beat.at > started && beat.at <= zero,
            "heartbeat outside the drain"
        );
        assert_eq!(beat.params["LifecycleHookName"], HOOK);
        assert_eq!(beat.params["InstanceId"], INSTANCE);
    }
    let gaps: Vec<_> = beats
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(950)),
        "heartbeats too close: {gaps:?}"
    );
    let completes = rig.asg.accepted(COMPLETE);
    assert_eq!(completes.len(), 1);
    assert!(completes[0].at >= zero);
    let s = rig.stats.snapshot();
    assert_eq!(s.heartbeats_sent, beats.len() as u64);
    assert_eq!((s.heartbeat_errors, s.lifecycle_completed), (0, 1));
}

#[tokio::test]
async fn drain_timeout_completes_with_work_outstanding() {
    let mut rig = Rig::start().await;
    rig.cfg.drain_timeout_secs = 2;
    rig.cfg.heartbeat_interval_secs = Some(1);
    let drain = TestDrain::new(1, Duration::from_secs(3600));
    let watcher = rig.spawn(drain.clone());
    rig.wait_polls(1).await;
    rig.imds.set_lifecycle_state(Some("Terminated"));
    join(watcher, Duration::from_secs(10)).await;

    assert!(drain.first_zero().is_none(), "work never finished");
    let completes = rig.asg.accepted(COMPLETE);
    assert_eq!(completes.len(), 1);
    let started = drain.drain_started().expect("drain started");
    let waited = completes[0].at.duration_since(started);
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(5),
        "waited {waited:?}"
    );
    assert!(
        !rig.asg.accepted(HEARTBEAT).is_empty(),
        "heartbeat during a 2 s drain at 1 s intervals"
    );
    let s = rig.stats.snapshot();
    assert_eq!((s.drain_timeouts, s.lifecycle_completed), (1, 1));
}

#[tokio::test]
async fn completion_survives_autoscaling_failures() {
    let mut rig = Rig::start().await;
    // Two attempts per call: 5 injected 500s exhaust two whole calls and one attempt of the third.
    rig.cfg.max_attempts = 2;
    let drain = TestDrain::new(0, Duration::from_millis(1));
    let watcher = rig.spawn(drain.clone());
    rig.wait_polls(1).await;
    rig.asg.fail_next(5);
    rig.imds.set_lifecycle_state(Some("Terminated"));
    join(watcher, Duration::from_secs(15)).await;

    assert_eq!(rig.asg.attempts(COMPLETE), 6, "{:?}", rig.asg.calls());
    assert_eq!(rig.asg.accepted(COMPLETE).len(), 1);
    let failed = rig.asg.calls().iter().filter(|c| c.status == 500).count();
    assert_eq!(failed, 5);
    let s = rig.stats.snapshot();
    assert_eq!((s.lifecycle_complete_errors, s.lifecycle_completed), (2, 1));
}

#[tokio::test]
async fn sdk_retries_hide_transient_failures() {
    let rig = Rig::start().await;
    let drain = TestDrain::new(0, Duration::from_millis(1));
    let watcher = rig.spawn(drain.clone());
    rig.wait_polls(1).await;
    rig.asg.fail_next(2);
    rig.imds.set_lifecycle_state(Some("Terminated"));
    join(watcher, Duration::from_secs(10)).await;

    assert_eq!(rig.asg.attempts(COMPLETE), 3);
    assert_eq!(rig.asg.accepted(COMPLETE).len(), 1);
    let s = rig.stats.snapshot();
    assert_eq!(
        (s.lifecycle_complete_errors, s.lifecycle_completed),
        (0, 1),
        "retried inside one call"
    );
}

#[tokio::test]
async fn protection_follows_pending_jobs_and_retries_failures() {
    let mut rig = Rig::start().await;
    rig.cfg.max_attempts = 1;
    let drain = TestDrain::new(0, Duration::from_millis(1));
    let watcher = rig.spawn(drain.clone());
    let protections = |rig: &Rig| -> Vec<String> {
        rig.asg
            .accepted(PROTECT)
            .iter()
            .map(|c| c.params["ProtectedFromScaleIn"].clone())
            .collect()
    };

    rig.wait_polls(3).await;
    assert!(rig.asg.calls().is_empty(), "idle from the start: no call");

    // The stand-in records a call when the request arrives; the watcher counts it only once the
    // answer is back, so each step waits for both.
    drain.pending.store(2, Ordering::SeqCst);
    wait_until("protection on", Duration::from_secs(5), || {
        protections(&rig) == ["true"] && rig.stats.snapshot().protected == 1
    })
    .await;
    drain.pending.store(5, Ordering::SeqCst);
    rig.wait_polls(4).await;
    assert_eq!(protections(&rig), ["true"], "more jobs is no change");
    assert_eq!(rig.stats.snapshot().protected, 1);

    drain.pending.store(0, Ordering::SeqCst);
    wait_until("protection off", Duration::from_secs(5), || {
        protections(&rig) == ["true", "false"] && rig.stats.snapshot().protected == 0
    })
    .await;

    rig.asg.fail_next(2);
    drain.pending.store(1, Ordering::SeqCst);
    wait_until(
        "protection on after failures",
        Duration::from_secs(5),
        || protections(&rig).len() == 3 && rig.stats.snapshot().protected == 1,
    )
    .await;
    assert_eq!(protections(&rig), ["true", "false", "true"]);
    assert_eq!(rig.asg.attempts(PROTECT), 5);
    let call = &rig.asg.accepted(PROTECT)[2];
    assert_eq!(call.params["AutoScalingGroupName"], GROUP);
    assert_eq!(call.params["InstanceIds.member.1"], INSTANCE);
    let s = rig.stats.snapshot();
    assert_eq!(
        (s.protection_changes, s.protection_errors, s.protected),
        (3, 2, 1)
    );

    // Draining is not disturbed by protection bookkeeping; the watcher still completes.
    rig.imds.set_lifecycle_state(Some("Terminated"));
    join(watcher, Duration::from_secs(10)).await;
    assert_eq!(rig.asg.accepted(COMPLETE).len(), 1);
}

#[tokio::test]
async fn protection_waits_for_in_service() {
    let rig = Rig::start().await;
    rig.imds.set_lifecycle_state(Some("Pending"));
    let drain = TestDrain::new(0, Duration::from_millis(1));
    drain.pending.store(1, Ordering::SeqCst);
    let watcher = rig.spawn(drain.clone());
    rig.wait_polls(4).await;
    assert!(
        rig.asg.calls().is_empty(),
        "Auto Scaling refuses protection outside InService"
    );
    assert_eq!(rig.stats.snapshot().lifecycle_state, 3);
    rig.imds.set_lifecycle_state(Some("InService"));
    wait_until("protection on", Duration::from_secs(5), || {
        rig.asg.accepted(PROTECT).len() == 1
    })
    .await;
    watcher.abort();
}

#[tokio::test]
async fn imds_outages_are_counted_and_survived() {
    let rig = Rig::start().await;
    rig.imds.set_available(false);
    let drain = TestDrain::new(0, Duration::from_millis(1));
    let watcher = rig.spawn(drain.clone());
    wait_until("instance id failures", Duration::from_secs(5), || {
        rig.stats.snapshot().imds_errors >= 2
    })
    .await;
    rig.imds.set_available(true);
    rig.wait_polls(2).await;

    // An outage while in service, then a token the service no longer knows.
    rig.imds.set_available(false);
    let before = rig.stats.snapshot().imds_errors;
    wait_until("state read failures", Duration::from_secs(5), || {
        rig.stats.snapshot().imds_errors > before
    })
    .await;
    rig.imds.set_available(true);
    rig.wait_polls(2).await;
    let tokens = rig.imds.token_requests();
    rig.imds.revoke_tokens();
    rig.wait_polls(2).await;
    assert!(
        rig.imds.unauthorized() >= 1 && rig.imds.token_requests() > tokens,
        "token refreshed after a 401"
    );

    assert_eq!(
        drain.begin_calls.load(Ordering::SeqCst),
        0,
        "an outage is not a termination"
    );
    rig.imds.set_lifecycle_state(Some("Terminated"));
    join(watcher, Duration::from_secs(10)).await;
    assert_eq!(rig.asg.accepted(COMPLETE).len(), 1);
}

#[tokio::test]
async fn imds_client_uses_and_reuses_a_token() {
    let rig = Rig::start().await;
    let bare = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let status = bare
        .get(format!("{}/latest/meta-data/instance-id", rig.imds.url()))
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status, 401, "stand-in refuses reads without a token");

    let imds = Imds::new(&rig.cfg).expect("client");
    assert_eq!(imds.instance_id().await.expect("instance id"), INSTANCE);
    assert_eq!(
        imds.lifecycle_state().await.expect("state"),
        Some(LifecycleState::InService)
    );
    assert_eq!(rig.imds.token_requests(), 1, "one token for both reads");
    rig.imds.set_lifecycle_state(None);
    assert_eq!(
        imds.lifecycle_state().await.expect("404 is not an error"),
        None
    );
    // A revoked token is replaced within the same read, even with a single attempt per read.
    let mut one_try = rig.cfg.clone();
    one_try.max_attempts = 1;
    let imds = Imds::new(&one_try).expect("client");
    assert_eq!(imds.instance_id().await.expect("instance id"), INSTANCE);
    rig.imds.revoke_tokens();
    assert_eq!(
        imds.instance_id().await.expect("read after revocation"),
        INSTANCE
    );
    assert_eq!(rig.imds.token_requests(), 3);
    rig.imds.set_available(false);
    assert!(imds.lifecycle_state().await.is_err());
}

#[tokio::test]
async fn autoscaling_refusals_are_reported_not_retried() {
    let mut rig = Rig::start().await;
    rig.cfg.lifecycle_hook = "some-other-hook".into();
    let asg = AutoScaling::with_static_credentials(&rig.cfg, "AKIDTEST", "secret");
    let err = asg
        .complete_lifecycle_action(INSTANCE)
        .await
        .expect_err("wrong hook is refused");
    assert!(err.is_rejected(), "{err}");
    assert!(err.to_string().contains("LifecycleHookName"), "{err}");
    assert_eq!(
        rig.asg.attempts(COMPLETE),
        1,
        "a ValidationError is not retried"
    );
    assert!(rig.asg.accepted(COMPLETE).is_empty());
}

#[tokio::test]
async fn finish_completes_at_once_when_the_server_stopped_mid_drain() {
    let rig = Rig::start().await;
    let drain = TestDrain::new(1, Duration::from_secs(3600));
    let watcher = rig.spawn_handle(drain.clone());
    rig.wait_polls(1).await;
    rig.imds.set_lifecycle_state(Some("Terminated"));
    wait_until("drain begun", Duration::from_secs(5), || {
        drain.drain_started().is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rig.asg.calls().is_empty(),
        "work is outstanding: no completion yet"
    );

    tokio::time::timeout(Duration::from_secs(5), watcher.finish())
        .await
        .expect("finish is prompt");
    assert_eq!(rig.asg.accepted(COMPLETE).len(), 1);
    let s = rig.stats.snapshot();
    assert_eq!((s.lifecycle_completed, s.drain_timeouts), (1, 0));
}

#[tokio::test]
async fn finish_after_a_plain_sigterm_stops_the_watcher() {
    let rig = Rig::start().await;
    let drain = TestDrain::new(0, Duration::from_millis(1));
    let watcher = rig.spawn_handle(drain.clone());
    rig.wait_polls(2).await;
    tokio::time::timeout(Duration::from_secs(1), watcher.finish())
        .await
        .expect("finish is immediate");
    let reads = rig.imds.state_reads();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.imds.state_reads(), reads, "watcher stopped polling");
    assert!(rig.asg.calls().is_empty());
    assert_eq!(drain.begin_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn default_chain_signs_with_instance_profile_credentials() {
    let rig = Rig::start().await;
    let drain = TestDrain::new(0, Duration::from_millis(1));
    // The production entry point: no client given, credentials from the default chain.
    let watcher = brs_aws::spawn(rig.cfg.clone(), drain.clone(), rig.stats.clone());
    rig.wait_polls(1).await;
    rig.imds.set_lifecycle_state(Some("Terminated"));
    wait_until("completion", Duration::from_secs(20), || {
        !rig.asg.accepted(COMPLETE).is_empty()
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), watcher.finish())
        .await
        .expect("finish");

    let completes = rig.asg.accepted(COMPLETE);
    assert_eq!(completes.len(), 1);
    // Environment or profile credentials come first in the chain; only without them is IMDS used.
    let other_sources = [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some());
    if !other_sources {
        assert_eq!(
            completes[0].access_key.as_deref(),
            Some(brs_aws::testing::IMDS_ACCESS_KEY)
        );
        assert!(rig.imds.credential_reads() >= 1);
    }
}

#[tokio::test]
async fn heartbeat_failures_are_counted_and_draining_goes_on() {
    let mut rig = Rig::start().await;
    rig.cfg.heartbeat_interval_secs = Some(1);
    rig.cfg.max_attempts = 1;
    let drain = TestDrain::new(3, Duration::from_millis(500));
    let watcher = rig.spawn(drain.clone());
    rig.wait_polls(1).await;
    // The first Auto Scaling call of this drain is the heartbeat at 1 s; it fails.
    rig.asg.fail_next(1);
    rig.imds.set_lifecycle_state(Some("Terminated"));
    join(watcher, Duration::from_secs(10)).await;

    assert_eq!(rig.asg.attempts(HEARTBEAT), 1);
    assert!(rig.asg.accepted(HEARTBEAT).is_empty());
    assert_eq!(rig.asg.accepted(COMPLETE).len(), 1);
    let s = rig.stats.snapshot();
    assert_eq!(
        (s.heartbeat_errors, s.heartbeats_sent, s.lifecycle_completed),
        (1, 0, 1)
    );
}
