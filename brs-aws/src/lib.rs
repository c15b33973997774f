//! Lifecycle-aware scale-in for brs-serve on an EC2 Auto Scaling instance.
//!
//! [`run`] watches IMDSv2's target lifecycle state. When the group picks this instance for
//! termination the server drains through the [`Drain`] trait it implements, the watcher sends
//! RecordLifecycleActionHeartbeat while draining takes long, then CompleteLifecycleAction (CONTINUE)
//! exactly once. While async jobs are pending the instance is protected from scale-in. Every AWS call
//! has a timeout and bounded retries; failures are logged and counted in [`AwsStats`], never fatal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod asg;
mod config;
mod error;
mod imds;
mod lifecycle;
mod protection;
mod stats;
#[cfg(feature = "testing")]
pub mod testing;

pub use asg::AutoScaling;
pub use config::AwsConfig;
pub use error::AwsError;
pub use imds::{Imds, LifecycleState};
pub use stats::{AwsStats, AwsStatsSnapshot};

/// The server side of a drain, implemented by brs-serve.
pub trait Drain: Send + Sync + 'static {
    /// Start draining exactly as on SIGTERM (readyz 503 at once, refuse new work after the grace period).
    fn begin_drain(&self);
    /// Requests in flight + queued + unfinished jobs; the watcher completes the lifecycle action at 0.
    fn outstanding(&self) -> usize;
    /// Unfinished async jobs (scale-in protection is on while > 0).
    fn pending_jobs(&self) -> usize;
}

/// Runs the watcher with credentials from the default chain. Returns only after the lifecycle action
/// is completed (or given up on), or at once when the config is unusable; it never stops serving.
/// A server that exits after its drain should prefer [`spawn`], whose handle lets the completion
/// finish before the process ends.
pub async fn run(cfg: AwsConfig, drain: Arc<dyn Drain>, stats: Arc<AwsStats>) {
    watch(cfg, None, drain, stats, Arc::new(AtomicBool::new(false))).await;
}

/// Like [`run`] with a given Auto Scaling client (tests use [`AutoScaling::with_static_credentials`]).
pub async fn run_with(
    cfg: AwsConfig,
    asg: AutoScaling,
    drain: Arc<dyn Drain>,
    stats: Arc<AwsStats>,
) {
    watch(
        cfg,
        Some(asg),
        drain,
        stats,
        Arc::new(AtomicBool::new(false)),
    )
    .await;
}

/// Spawns [`run`] on the current Tokio runtime.
pub fn spawn(cfg: AwsConfig, drain: Arc<dyn Drain>, stats: Arc<AwsStats>) -> Watcher {
    Watcher::spawn(cfg, None, drain, stats)
}

/// Spawns [`run_with`] on the current Tokio runtime.
pub fn spawn_with(
    cfg: AwsConfig,
    asg: AutoScaling,
    drain: Arc<dyn Drain>,
    stats: Arc<AwsStats>,
) -> Watcher {
    Watcher::spawn(cfg, Some(asg), drain, stats)
}

/// A running watcher. The server calls [`Watcher::finish`] after it has stopped serving.
#[derive(Debug)]
pub struct Watcher {
    task: tokio::task::JoinHandle<()>,
    stats: Arc<AwsStats>,
    server_stopped: Arc<AtomicBool>,
    budget: Duration,
}

impl Watcher {
    fn spawn(
        cfg: AwsConfig,
        asg: Option<AutoScaling>,
        drain: Arc<dyn Drain>,
        stats: Arc<AwsStats>,
    ) -> Self {
        let server_stopped = Arc::new(AtomicBool::new(false));
        let budget = lifecycle::completion_budget(&cfg);
        let task = tokio::spawn(watch(
            cfg,
            asg,
            drain,
            stats.clone(),
            server_stopped.clone(),
        ));
        Self {
            task,
            stats,
            server_stopped,
            budget,
        }
    }

    /// Call once the server has stopped serving, before the process exits. When the watcher started the
    /// drain, the lifecycle action is completed now (without waiting for outstanding work the server
    /// has given up on) and this waits for that, bounded by the calls' timeouts and retries; otherwise
    /// (a plain SIGTERM) the watcher is stopped at once.
    pub async fn finish(self) {
        self.server_stopped.store(true, Ordering::SeqCst);
        if self.stats.snapshot().drains_started == 0 {
            self.task.abort();
            return;
        }
        match tokio::time::timeout(self.budget, self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "lifecycle watcher failed"),
            Err(_) => tracing::error!(
                "lifecycle watcher still busy at exit; the hook's timeout will end it"
            ),
        }
    }
}

async fn watch(
    cfg: AwsConfig,
    asg: Option<AutoScaling>,
    drain: Arc<dyn Drain>,
    stats: Arc<AwsStats>,
    server_stopped: Arc<AtomicBool>,
) {
    if let Err(e) = cfg.validate() {
        tracing::error!(error = %e, "lifecycle watcher not started");
        return;
    }
    let asg = match asg {
        Some(asg) => asg,
        None => match AutoScaling::from_environment(&cfg).await {
            Ok(asg) => asg,
            Err(e) => {
                tracing::error!(error = %e, "lifecycle watcher not started");
                return;
            }
        },
    };
    let imds = match Imds::new(&cfg) {
        Ok(imds) => imds,
        Err(e) => {
            tracing::error!(error = %e, "lifecycle watcher not started");
            return;
        }
    };
    lifecycle::Watcher {
        cfg,
        imds,
        asg,
        drain,
        stats,
        server_stopped,
    }
    .run()
    .await;
}
