//! Draining for shutdown, triggered by SIGTERM or from code (the AWS lifecycle hook, a Lambda
//! runtime): readiness fails at once, new work is still taken for a grace period (the load balancer
//! needs a few health checks to notice), then refused, and the caller waits until in-flight
//! requests and pending job images are done.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

/// Shared drain state; cheap to clone through `Arc`.
#[derive(Debug)]
pub struct Drain {
    grace: Duration,
    started: Mutex<Option<Instant>>,
    started_tx: watch::Sender<bool>,
    in_flight: AtomicUsize,
    pending_jobs: AtomicUsize,
    /// Job images waiting in this process's own queue (the in-process queue only): they die
    /// with the process, so they count as pending work.
    queued: AtomicUsize,
    idle: Notify,
}

impl Drain {
    pub fn new(grace: Duration) -> Arc<Drain> {
        Arc::new(Drain {
            grace,
            started: Mutex::new(None),
            started_tx: watch::channel(false).0,
            in_flight: AtomicUsize::new(0),
            pending_jobs: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            idle: Notify::new(),
        })
    }

    /// Begins draining; calling it again changes nothing.
    pub fn start(&self) {
        let mut s = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if s.is_none() {
            *s = Some(Instant::now());
            tracing::info!(grace_secs = self.grace.as_secs_f64(), "draining");
            self.started_tx.send_replace(true);
        }
    }

    /// True once `start` was called: /readyz fails.
    pub fn is_draining(&self) -> bool {
        self.started_since().is_some()
    }

    /// True once the grace period after `start` is over: new work gets 503.
    pub fn is_refusing(&self) -> bool {
        self.started_since()
            .is_some_and(|t| t.elapsed() >= self.grace)
    }

    fn started_since(&self) -> Option<Instant> {
        *self.started.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves when `start` has been called (at once if it already was).
    pub async fn started(&self) {
        let mut rx = self.started_tx.subscribe();
        // Err only if the sender is gone, which cannot happen while `self` lives.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Sleeps out whatever is left of the grace period.
    pub async fn grace_elapsed(&self) {
        if let Some(t) = self.started_since() {
            let left = self.grace.saturating_sub(t.elapsed());
            tokio::time::sleep(left).await;
        }
    }

    /// HTTP work requests being served.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Job images being translated here, plus those waiting in this process's own queue; the
    /// lifecycle module protects the instance from scale-in while this is above zero.
    pub fn pending_jobs(&self) -> usize {
        self.pending_jobs.load(Ordering::SeqCst) + self.queued.load(Ordering::SeqCst)
    }

    /// `n` job images entered this process's own queue.
    pub(crate) fn enqueued(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::SeqCst);
    }

    /// One job image left this process's own queue for good (done or failed).
    pub(crate) fn dequeued(&self) {
        let _ = self
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| q.checked_sub(1));
        self.idle.notify_waiters();
    }

    pub fn is_idle(&self) -> bool {
        self.in_flight() == 0 && self.pending_jobs() == 0
    }

    /// Waits until nothing is in flight or pending, or `timeout`; true when idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.is_idle() {
                return true;
            }
            // The periodic wake-up guards against a notification racing the check above.
            let wake = tokio::time::Instant::now() + Duration::from_millis(100);
            if tokio::time::timeout_at(deadline.min(wake), notified)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return self.is_idle();
            }
        }
    }

    /// Counts one HTTP work request until the guard drops.
    pub(crate) fn request(self: &Arc<Self>) -> WorkGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        WorkGuard {
            drain: self.clone(),
            job: false,
        }
    }

    /// Counts one pending job image until the guard drops.
    pub(crate) fn job_image(self: &Arc<Self>) -> WorkGuard {
        self.pending_jobs.fetch_add(1, Ordering::SeqCst);
        WorkGuard {
            drain: self.clone(),
            job: true,
        }
    }
}

/// Decrements its counter when dropped, so an early return or a cancelled future still counts.
#[derive(Debug)]
pub(crate) struct WorkGuard {
    drain: Arc<Drain>,
    job: bool,
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        let c = if self.job {
            &self.drain.pending_jobs
        } else {
            &self.drain.in_flight
        };
        c.fetch_sub(1, Ordering::SeqCst);
        self.drain.idle.notify_waiters();
    }
}

#[cfg(feature = "aws")]
impl brs_aws::Drain for Drain {
    fn begin_drain(&self) {
        self.start();
    }
    fn outstanding(&self) -> usize {
        self.in_flight() + Drain::pending_jobs(self)
    }
    fn pending_jobs(&self) -> usize {
        Drain::pending_jobs(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_only_after_grace_and_waits_for_work() {
        let d = Drain::new(Duration::from_millis(100));
        assert!(!d.is_draining());
        let g = d.request();
        let j = d.job_image();
        d.start();
        d.started().await;
        assert!(d.is_draining() && !d.is_refusing());
        d.grace_elapsed().await;
        assert!(d.is_refusing());
        assert!(!d.wait_idle(Duration::from_millis(50)).await);
        assert_eq!((d.in_flight(), d.pending_jobs()), (1, 1));
        let d2 = d.clone();
        let waiter = tokio::spawn(async move { d2.wait_idle(Duration::from_secs(5)).await });
        drop(g);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(j);
        assert!(waiter.await.expect("join"));
    }
}
