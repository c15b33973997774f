//! The Auto Scaling scale-in path end to end: the real brs-serve binary under load on an "instance"
//! whose IMDSv2 (a local stand-in) flips the lifecycle state to Terminated. Every request sent while
//! the instance was healthy succeeds, the server drains and exits, and CompleteLifecycleAction
//! reaches the (local) Auto Scaling endpoint exactly once.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use brs_aws::testing::{AutoScalingStandIn, ImdsStandIn};
use reqwest::StatusCode;

use crate::common::{Kill, client, free_port, png, publish, tiny_config};

const INSTANCE: &str = "i-0123456789abcdef0";
const GROUP: &str = "brs-serve";
const HOOK: &str = "brs-drain";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_instance_drains_then_completes_the_lifecycle_action_once() {
    let imds = ImdsStandIn::start(INSTANCE).await.expect("imds stand-in");
    imds.set_lifecycle_state(Some("InService"));
    let asg = AutoScalingStandIn::start(GROUP, HOOK, INSTANCE)
        .await
        .expect("autoscaling stand-in");

    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    publish(&run, &tiny_config(), 1, 1);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            r#"bind = "127.0.0.1:{port}"
drain_grace = "1s"
# Every client here is 127.0.0.1.
[clients]
images_per_sec = 10000.0
image_burst = 10000
max_concurrent = 1000
[store]
path = {results:?}
[styles.default]
path = {run:?}
[aws]
region = "us-east-1"
asg_name = "{GROUP}"
lifecycle_hook = "{HOOK}"
drain_timeout_secs = 60
imds_endpoint = "{imds}"
autoscaling_endpoint = "{asg}"
poll_interval_ms = 100
"#,
            results = dir.path().join("results"),
            imds = imds.url(),
            asg = asg.url(),
        ),
    )
    .expect("write config");
    let child = Command::new(env!("CARGO_BIN_EXE_brs-serve"))
        .args(["--config", config.to_str().expect("utf8")])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn brs-serve");
    let mut child = Kill(child);

    let c = client();
    child.wait_ready(&c, &base).await;

    // Clients behave like a load balancer's targets: they stop sending once /readyz fails.
    let unhealthy = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (c, url, flag) = (c.clone(), format!("{base}/readyz"), unhealthy.clone());
        tokio::spawn(async move {
            while !flag.load(Ordering::SeqCst) {
                let ok = c
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK);
                if !ok {
                    flag.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut clients = Vec::new();
    for id in 0..3u8 {
        let (c, url, flag) = (c.clone(), format!("{base}/v1/translate"), unhealthy.clone());
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut n = 0u32;
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                let mut body = png(96, 96);
                body.extend_from_slice(&[id, n as u8, (n >> 8) as u8]); // distinct: no cache hits
                n += 1;
                let status = c
                    .post(&url)
                    .header("content-type", "image/png")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                statuses.push(status);
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    imds.set_lifecycle_state(Some("Terminated"));

    let mut statuses = Vec::new();
    for client in clients {
        statuses.extend(client.await.expect("client task"));
    }
    watcher.await.expect("watcher task");
    let failed: Vec<_> = statuses.iter().filter(|&&s| s != 200).collect();
    assert!(statuses.len() >= 3, "too little load: {statuses:?}");
    assert!(
        failed.is_empty(),
        "failed requests during scale-in: {failed:?} of {}",
        statuses.len()
    );

    // The server exits on its own once drained and the action is completed.
    let t = Instant::now();
    let exit = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "brs-serve did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "exit status {exit}");
    let completed = asg.accepted("CompleteLifecycleAction");
    assert_eq!(completed.len(), 1, "calls: {:?}", asg.calls());
    let params = &completed[0].params;
    assert_eq!(
        params.get("LifecycleActionResult").map(String::as_str),
        Some("CONTINUE")
    );
    assert_eq!(params.get("InstanceId").map(String::as_str), Some(INSTANCE));
}
