//! Shared helpers: a counting [`Drain`], a watcher wired to the stand-ins, and polling with a deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brs_aws::testing::{AutoScalingStandIn, ImdsStandIn};
use brs_aws::{AutoScaling, AwsConfig, AwsStats, Drain};

pub(crate) const GROUP: &str = "brs-asg";
pub(crate) const HOOK: &str = "brs-drain";
pub(crate) const INSTANCE: &str = "i-0123456789abcdef0";

/// A server stand-in whose outstanding work counts down by one every `step` once draining begins.
pub(crate) struct TestDrain {
    work: usize,
    step: Duration,
    drain_started: Mutex<Option<Instant>>,
    first_zero: Mutex<Option<Instant>>,
    pub(crate) begin_calls: AtomicUsize,
    pub(crate) pending: AtomicUsize,
}

impl TestDrain {
    pub(crate) fn new(work: usize, step: Duration) -> Arc<Self> {
        Arc::new(Self {
            work,
            step,
            drain_started: Mutex::new(None),
            first_zero: Mutex::new(None),
            begin_calls: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
        })
    }
    /// When `outstanding()` first answered 0.
    pub(crate) fn first_zero(&self) -> Option<Instant> {
        *self.first_zero.lock().expect("lock")
    }
    pub(crate) fn drain_started(&self) -> Option<Instant> {
        *self.drain_started.lock().expect("lock")
    }
}

impl Drain for TestDrain {
    fn begin_drain(&self) {
        self.begin_calls.fetch_add(1, Ordering::SeqCst);
        self.drain_started
            .lock()
            .expect("lock")
            .get_or_insert_with(Instant::now);
    }
    fn outstanding(&self) -> usize {
        let Some(start) = self.drain_started() else {
            return self.work;
        };
        let done = (start.elapsed().as_nanos() / self.step.as_nanos().max(1)) as usize;
        let left = self.work.saturating_sub(done);
        if left == 0 {
            self.first_zero
                .lock()
                .expect("lock")
                .get_or_insert_with(Instant::now);
        }
        left
    }
    fn pending_jobs(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

/// Both stand-ins, and a config pointing at them with test-sized intervals.
pub(crate) struct Rig {
    pub(crate) imds: ImdsStandIn,
    pub(crate) asg: AutoScalingStandIn,
    pub(crate) cfg: AwsConfig,
    pub(crate) stats: Arc<AwsStats>,
}

impl Rig {
    pub(crate) async fn start() -> Self {
        init_tracing();
        let imds = ImdsStandIn::start(INSTANCE).await.expect("imds stand-in");
        let asg = AutoScalingStandIn::start(GROUP, HOOK, INSTANCE)
            .await
            .expect("autoscaling stand-in");
        let mut cfg = AwsConfig::new("eu-west-1", GROUP, HOOK);
        cfg.imds_endpoint = imds.url();
        cfg.autoscaling_endpoint = Some(asg.url());
        cfg.poll_interval_ms = 50;
        cfg.call_timeout_ms = 2000;
        cfg.initial_backoff_ms = 20;
        cfg.drain_timeout_secs = 30;
        Self {
            imds,
            asg,
            cfg,
            stats: Arc::new(AwsStats::default()),
        }
    }

    /// Spawns the watcher with static test credentials.
    pub(crate) fn spawn(&self, drain: Arc<TestDrain>) -> tokio::task::JoinHandle<()> {
        let asg = AutoScaling::with_static_credentials(&self.cfg, "AKIDTEST", "secret");
        tokio::spawn(brs_aws::run_with(
            self.cfg.clone(),
            asg,
            drain,
            self.stats.clone(),
        ))
    }

    /// Spawns the watcher through [`brs_aws::spawn_with`], as a server would.
    pub(crate) fn spawn_handle(&self, drain: Arc<TestDrain>) -> brs_aws::Watcher {
        let asg = AutoScaling::with_static_credentials(&self.cfg, "AKIDTEST", "secret");
        brs_aws::spawn_with(self.cfg.clone(), asg, drain, self.stats.clone())
    }

    /// Waits until the watcher has read the lifecycle state `n` more times (it is polling).
    pub(crate) async fn wait_polls(&self, n: usize) {
        let target = self.imds.state_reads() + n;
        wait_until("lifecycle state polls", Duration::from_secs(10), || {
            self.imds.state_reads() >= target
        })
        .await;
    }
}

/// Polls `cond` every 10 ms; panics naming `what` after `timeout`.
pub(crate) async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits the watcher's end, which comes only after the lifecycle action.
pub(crate) async fn join(handle: tokio::task::JoinHandle<()>, timeout: Duration) {
    tokio::time::timeout(timeout, handle)
        .await
        .expect("watcher did not finish in time")
        .expect("watcher panicked");
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("brs_aws=debug"))
        .with_test_writer()
        .try_init();
}
