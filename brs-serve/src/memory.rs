//! Gives freed memory back to the kernel once the inference workers have been idle for a while.
//!
//! The serving malloc profile (`brs_model::alloc`) keeps what a forward pass freed, so the next
//! pass reuses it instead of faulting fresh pages in; after a burst, that memory would stay
//! resident for good. The workers mark each forward pass on an [`Activity`]; one thread watches it
//! and calls `release_free_memory` once no pass has run for [`IDLE_BEFORE_RELEASE`], once per
//! idle spell.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// How long the workers stay idle before freed memory goes back. Long enough that requests a
/// client sends one after another (or a steady trickle) keep their memory; short enough that a
/// burst's memory is back well within the 30 s scripts/bench-abuse allows.
pub const IDLE_BEFORE_RELEASE: Duration = Duration::from_secs(5);

/// Forward passes running and finished, across every style's worker.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    running: AtomicUsize,
    finished: AtomicU64,
}

/// A forward pass in progress; it counts as finished when dropped.
#[derive(Debug)]
pub(crate) struct Busy<'a>(&'a Activity);

impl Activity {
    pub(crate) fn begin(&self) -> Busy<'_> {
        self.running.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    fn snapshot(&self) -> (usize, u64) {
        (
            self.running.load(Ordering::SeqCst),
            self.finished.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// When to release: after `idle` without a pass starting or finishing, once per idle spell.
#[derive(Debug)]
struct Watch {
    idle: Duration,
    seen: u64,
    since: Instant,
    released: u64,
}

impl Watch {
    fn new(idle: Duration, now: Instant) -> Watch {
        // Never released yet: the first idle spell gives back what loading and warming up the
        // models freed.
        Watch {
            idle,
            seen: 0,
            since: now,
            released: u64::MAX,
        }
    }

    /// Whether to release now, given the activity seen at `now`.
    fn due(&mut self, now: Instant, (running, finished): (usize, u64)) -> bool {
        if running > 0 || finished != self.seen {
            self.seen = finished;
            self.since = now;
            return false;
        }
        if self.released == finished || now.duration_since(self.since) < self.idle {
            return false;
        }
        self.released = finished;
        true
    }
}

/// Starts the thread that releases memory after each idle spell; it ends when `activity` is
/// dropped.
pub(crate) fn spawn_releaser(
    activity: Weak<Activity>,
    idle: Duration,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let tick = (idle / 5).max(Duration::from_millis(10));
    std::thread::Builder::new()
        .name("memory-release".into())
        .spawn(move || {
            let mut watch = Watch::new(idle, Instant::now());
            loop {
                std::thread::sleep(tick);
                let Some(activity) = activity.upgrade() else {
                    return;
                };
                if watch.due(Instant::now(), activity.snapshot()) {
                    let released = brs_model::alloc::release_free_memory();
                    metrics.memory_released(released);
                    tracing::debug!(released, "idle: freed memory given back");
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_once_per_idle_spell_and_never_while_a_pass_runs() {
        let idle = Duration::from_secs(5);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = Watch::new(idle, t0);
        // Idle from the start (after warm-ups): one release after `idle`, then none.
        assert!(!w.due(at(4), (0, 2)));
        assert!(!w.due(at(8), (0, 2)));
        assert!(w.due(at(9), (0, 2)));
        assert!(!w.due(at(30), (0, 2)));
        // A long pass is never interrupted, however long it runs.
        assert!(!w.due(at(31), (1, 2)));
        assert!(!w.due(at(40), (1, 2)));
        // It ends: the clock starts again from when it was seen ending.
        assert!(!w.due(at(41), (0, 3)));
        assert!(!w.due(at(45), (0, 3)));
        assert!(w.due(at(46), (0, 3)));
        // Passes that keep finishing keep their memory.
        for s in 47..60 {
            assert!(!w.due(at(s), (0, 3 + s - 46)), "released at {s}");
        }
    }

    #[test]
    fn a_pass_marks_itself_running_then_finished() {
        let a = Activity::default();
        {
            let _busy = a.begin();
            assert_eq!(a.snapshot(), (1, 0));
        }
        assert_eq!(a.snapshot(), (0, 1));
    }
}
