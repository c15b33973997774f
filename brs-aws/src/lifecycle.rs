//! The watcher: polls the target lifecycle state, keeps scale-in protection in step with pending jobs,
//! and on `Terminated` drains the server, sends heartbeats while that takes long, then completes the
//! lifecycle action once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::Drain;
use crate::asg::AutoScaling;
use crate::config::AwsConfig;
use crate::imds::{Imds, LifecycleState};
use crate::protection::Protection;
use crate::stats::AwsStats;

/// Rounds of CompleteLifecycleAction (each with the SDK's own retries) before leaving the hook to its
/// heartbeat timeout: the action matters enough to outlast a short Auto Scaling outage.
const COMPLETE_ROUNDS: u32 = 5;
/// How often outstanding work is checked while draining: cheap, and completing promptly shortens
/// every scale-in.
const DRAIN_CHECK: Duration = Duration::from_millis(100);

/// Everything one watcher needs; see [`crate::run`] and [`crate::run_with`].
pub(crate) struct Watcher {
    pub(crate) cfg: AwsConfig,
    pub(crate) imds: Imds,
    pub(crate) asg: AutoScaling,
    pub(crate) drain: Arc<dyn Drain>,
    pub(crate) stats: Arc<AwsStats>,
    /// Set by [`crate::Watcher::finish`]: the server stopped, so whatever is outstanding never ends.
    pub(crate) server_stopped: Arc<AtomicBool>,
}

/// Longest time completing the lifecycle action can take: every round's calls and backoffs, plus slack.
pub(crate) fn completion_budget(cfg: &AwsConfig) -> Duration {
    let rounds: Duration = (1..=COMPLETE_ROUNDS)
        .map(|r| cfg.operation_timeout() + cfg.backoff(r))
        .sum();
    rounds + Duration::from_secs(1)
}

impl Watcher {
    pub(crate) async fn run(self) {
        let instance_id = self.instance_id().await;
        tracing::info!(%instance_id, group = %self.cfg.asg_name, "lifecycle watcher started");
        let mut protection = Protection::new();
        let mut last_state: Option<LifecycleState> = None;
        let mut imds_failing = false;
        loop {
            match self.imds.lifecycle_state().await {
                Ok(state) => {
                    if imds_failing {
                        tracing::info!("instance metadata reachable again");
                        imds_failing = false;
                    }
                    if state != last_state {
                        match &state {
                            Some(s) => tracing::info!(state = ?s, "target lifecycle state"),
                            None => tracing::info!(
                                "no target lifecycle state (not in an Auto Scaling group?)"
                            ),
                        }
                    }
                    self.stats.set_state(state.as_ref());
                    last_state = state;
                }
                Err(e) => {
                    // Warn once per outage; every failed read is still counted.
                    if imds_failing {
                        tracing::debug!(error = %e, "instance metadata still unreachable");
                    } else {
                        tracing::warn!(error = %e, "instance metadata unreachable; keeping last state");
                        imds_failing = true;
                    }
                    self.stats.imds_error();
                }
            }
            if last_state == Some(LifecycleState::Terminated) {
                self.drain_and_complete(&instance_id).await;
                return;
            }
            // Auto Scaling accepts protection changes only for InService instances.
            if self.cfg.protect_while_jobs_pending && last_state == Some(LifecycleState::InService)
            {
                protection
                    .sync(
                        self.drain.pending_jobs(),
                        &self.cfg,
                        &self.asg,
                        &instance_id,
                        &self.stats,
                    )
                    .await;
            }
            tokio::time::sleep(self.cfg.poll_interval()).await;
        }
    }

    /// The instance id, retried until IMDS answers: without it no Auto Scaling call can be made.
    async fn instance_id(&self) -> String {
        let mut failures = 0;
        loop {
            match self.imds.instance_id().await {
                Ok(id) => return id,
                Err(e) => {
                    failures += 1;
                    self.stats.imds_error();
                    let wait = self.cfg.backoff(failures).max(self.cfg.poll_interval());
                    tracing::warn!(error = %e, retry_in = ?wait, "cannot read the instance id");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn drain_and_complete(&self, instance_id: &str) {
        tracing::info!(%instance_id, "instance chosen for termination: draining");
        self.stats.drain_started();
        self.drain.begin_drain();
        let start = Instant::now();
        let deadline = start + self.cfg.drain_timeout();
        let mut next_heartbeat = start + self.cfg.heartbeat_interval();
        loop {
            let outstanding = self.drain.outstanding();
            if outstanding == 0 {
                tracing::info!(elapsed = ?start.elapsed(), "drained");
                break;
            }
            if self.server_stopped.load(Ordering::SeqCst) {
                tracing::warn!(
                    outstanding,
                    "server stopped with work outstanding; completing now"
                );
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    outstanding,
                    "drain timeout reached with work outstanding; completing anyway"
                );
                self.stats.drain_timed_out();
                break;
            }
            if now >= next_heartbeat {
                match self.asg.record_heartbeat(instance_id).await {
                    Ok(()) => {
                        tracing::debug!(outstanding, "lifecycle heartbeat sent");
                        self.stats.heartbeat(true);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lifecycle heartbeat failed");
                        self.stats.heartbeat(false);
                    }
                }
                next_heartbeat = Instant::now() + self.cfg.heartbeat_interval();
            }
            let wake = (Instant::now() + DRAIN_CHECK)
                .min(deadline)
                .min(next_heartbeat);
            tokio::time::sleep_until(wake.into()).await;
        }
        self.complete(instance_id).await;
    }

    async fn complete(&self, instance_id: &str) {
        for round in 1..=COMPLETE_ROUNDS {
            match self.asg.complete_lifecycle_action(instance_id).await {
                Ok(()) => {
                    tracing::info!(%instance_id, "lifecycle action completed (CONTINUE)");
                    self.stats.complete(true);
                    return;
                }
                Err(e) if e.is_rejected() => {
                    tracing::error!(error = %e, "lifecycle action refused; the hook's default result will apply");
                    self.stats.complete(false);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, round, "completing the lifecycle action failed");
                    self.stats.complete(false);
                    if round < COMPLETE_ROUNDS {
                        tokio::time::sleep(self.cfg.backoff(round)).await;
                    }
                }
            }
        }
        tracing::error!(
            "gave up completing the lifecycle action; the hook's heartbeat timeout will end it"
        );
    }
}
