//! Counters of the watcher, as plain atomics the server renders in its `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::imds::LifecycleState;

/// Counters and gauges shared between the watcher and the server's metrics endpoint.
#[derive(Debug, Default)]
pub struct AwsStats {
    imds_errors: AtomicU64,
    lifecycle_state: AtomicU64,
    drains_started: AtomicU64,
    drain_timeouts: AtomicU64,
    heartbeats_sent: AtomicU64,
    heartbeat_errors: AtomicU64,
    lifecycle_completed: AtomicU64,
    lifecycle_complete_errors: AtomicU64,
    protection_changes: AtomicU64,
    protection_errors: AtomicU64,
    protected: AtomicU64,
}

/// A copy of [`AwsStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AwsStatsSnapshot {
    /// IMDS reads that failed after their retries.
    pub imds_errors: u64,
    /// Last target lifecycle state seen: 0 unknown, 1 InService, 2 Terminated, 3 any other.
    pub lifecycle_state: u64,
    /// Drains begun because the instance was chosen for termination (0 or 1).
    pub drains_started: u64,
    /// Drains that hit `drain_timeout_secs` with work still outstanding.
    pub drain_timeouts: u64,
    /// RecordLifecycleActionHeartbeat calls that succeeded.
    pub heartbeats_sent: u64,
    /// RecordLifecycleActionHeartbeat calls that failed after their retries.
    pub heartbeat_errors: u64,
    /// CompleteLifecycleAction calls that succeeded (0 or 1).
    pub lifecycle_completed: u64,
    /// CompleteLifecycleAction calls that failed after their retries.
    pub lifecycle_complete_errors: u64,
    /// SetInstanceProtection calls that succeeded.
    pub protection_changes: u64,
    /// SetInstanceProtection calls that failed after their retries.
    pub protection_errors: u64,
    /// 1 while the instance is known to be protected from scale-in.
    pub protected: u64,
}

impl AwsStats {
    pub fn snapshot(&self) -> AwsStatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AwsStatsSnapshot {
            imds_errors: get(&self.imds_errors),
            lifecycle_state: get(&self.lifecycle_state),
            drains_started: get(&self.drains_started),
            drain_timeouts: get(&self.drain_timeouts),
            heartbeats_sent: get(&self.heartbeats_sent),
            heartbeat_errors: get(&self.heartbeat_errors),
            lifecycle_completed: get(&self.lifecycle_completed),
            lifecycle_complete_errors: get(&self.lifecycle_complete_errors),
            protection_changes: get(&self.protection_changes),
            protection_errors: get(&self.protection_errors),
            protected: get(&self.protected),
        }
    }

    pub(crate) fn imds_error(&self) {
        self.imds_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn set_state(&self, state: Option<&LifecycleState>) {
        let code = match state {
            None => 0,
            Some(LifecycleState::InService) => 1,
            Some(LifecycleState::Terminated) => 2,
            Some(LifecycleState::Other(_)) => 3,
        };
        self.lifecycle_state.store(code, Ordering::Relaxed);
    }
    pub(crate) fn drain_started(&self) {
        self.drains_started.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn drain_timed_out(&self) {
        self.drain_timeouts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn heartbeat(&self, ok: bool) {
        let counter = if ok {
            &self.heartbeats_sent
        } else {
            &self.heartbeat_errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn complete(&self, ok: bool) {
        let counter = if ok {
            &self.lifecycle_completed
        } else {
            &self.lifecycle_complete_errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn protection(&self, result: Result<bool, ()>) {
        match result {
            Ok(on) => {
                self.protection_changes.fetch_add(1, Ordering::Relaxed);
                self.protected.store(u64::from(on), Ordering::Relaxed);
            }
            Err(()) => {
                self.protection_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl AwsStatsSnapshot {
    /// Prometheus text exposition of every field, metric names prefixed `brs_aws_`.
    pub fn prometheus_text(&self) -> String {
        let rows: [(&str, &str, &str, u64); 11] = [
            (
                "imds_errors_total",
                "counter",
                "IMDS reads that failed after retries",
                self.imds_errors,
            ),
            (
                "lifecycle_state",
                "gauge",
                "Target lifecycle state: 0 unknown, 1 InService, 2 Terminated, 3 other",
                self.lifecycle_state,
            ),
            (
                "drains_started_total",
                "counter",
                "Drains begun on a Terminated lifecycle state",
                self.drains_started,
            ),
            (
                "drain_timeouts_total",
                "counter",
                "Drains that reached drain_timeout_secs",
                self.drain_timeouts,
            ),
            (
                "heartbeats_total",
                "counter",
                "RecordLifecycleActionHeartbeat calls that succeeded",
                self.heartbeats_sent,
            ),
            (
                "heartbeat_errors_total",
                "counter",
                "RecordLifecycleActionHeartbeat calls that failed",
                self.heartbeat_errors,
            ),
            (
                "lifecycle_completed_total",
                "counter",
                "CompleteLifecycleAction calls that succeeded",
                self.lifecycle_completed,
            ),
            (
                "lifecycle_complete_errors_total",
                "counter",
                "CompleteLifecycleAction calls that failed",
                self.lifecycle_complete_errors,
            ),
            (
                "protection_changes_total",
                "counter",
                "SetInstanceProtection calls that succeeded",
                self.protection_changes,
            ),
            (
                "protection_errors_total",
                "counter",
                "SetInstanceProtection calls that failed",
                self.protection_errors,
            ),
            (
                "protected",
                "gauge",
                "1 while the instance is protected from scale-in",
                self.protected,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP brs_aws_{name} {help}\n# TYPE brs_aws_{name} {kind}\nbrs_aws_{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_snapshot_and_text() {
        let stats = AwsStats::default();
        stats.heartbeat(true);
        stats.heartbeat(true);
        stats.heartbeat(false);
        stats.protection(Ok(true));
        stats.set_state(Some(&LifecycleState::Terminated));
        let snap = stats.snapshot();
        assert_eq!((snap.heartbeats_sent, snap.heartbeat_errors), (2, 1));
        assert_eq!(
            (
                snap.protection_changes,
                snap.protected,
                snap.lifecycle_state
            ),
            (1, 1, 2)
        );
        let text = snap.prometheus_text();
        assert!(
            text.contains("# TYPE brs_aws_heartbeats_total counter\nbrs_aws_heartbeats_total 2\n"),
            "{text}"
        );
        assert!(text.contains("brs_aws_protected 1\n"));
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 11);
    }
}
