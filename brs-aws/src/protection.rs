//! Scale-in protection that follows the pending job count: on while jobs are unfinished, off when idle.
//!
//! Only changes are sent, so a steady state costs no API calls; a failed change is retried on later
//! ticks with growing backoff, because the job count may settle meanwhile and a stale retry would be
//! wasted.

use std::time::Instant;

use crate::asg::AutoScaling;
use crate::config::AwsConfig;
use crate::stats::AwsStats;

/// What the watcher last got Auto Scaling to accept, and when it may try again after a failure.
#[derive(Debug)]
pub(crate) struct Protection {
    /// Instances start unprotected (the group sets no NewInstancesProtectedFromScaleIn for us).
    applied: bool,
    failures: u32,
    next_try: Option<Instant>,
}

impl Protection {
    pub(crate) fn new() -> Self {
        Self {
            applied: false,
            failures: 0,
            next_try: None,
        }
    }

    /// Sends SetInstanceProtection when the wanted state differs from the applied one.
    pub(crate) async fn sync(
        &mut self,
        pending_jobs: usize,
        cfg: &AwsConfig,
        asg: &AutoScaling,
        instance_id: &str,
        stats: &AwsStats,
    ) {
        let want = pending_jobs > 0;
        if want == self.applied {
            // The count went back before a failed change could be retried: nothing is owed.
            self.failures = 0;
            self.next_try = None;
            return;
        }
        if self.next_try.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match asg.set_instance_protection(instance_id, want).await {
            Ok(()) => {
                tracing::info!(
                    protected = want,
                    pending_jobs,
                    "scale-in protection changed"
                );
                self.applied = want;
                self.failures = 0;
                self.next_try = None;
                stats.protection(Ok(want));
            }
            Err(e) => {
                self.failures += 1;
                let wait = cfg.backoff(self.failures);
                tracing::warn!(error = %e, protected = want, retry_in = ?wait, "scale-in protection change failed");
                self.next_try = Some(Instant::now() + wait);
                stats.protection(Err(()));
            }
        }
    }
}
