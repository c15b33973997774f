//! The in-process queue: what a single box and the demo use. Items live in memory, so they end
//! with the process; the drain therefore waits until the queue is empty before exiting.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Delivery, Receipt, WorkItem};

#[derive(Debug)]
pub struct LocalQueue {
    /// Items with the deliveries they had so far and when they may be delivered again.
    items: Mutex<VecDeque<(WorkItem, u32, Instant)>>,
    ready: Notify,
    max_receives: u32,
}

impl LocalQueue {
    pub fn new(max_receives: u32) -> LocalQueue {
        LocalQueue {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            max_receives: max_receives.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(WorkItem, u32, Instant)>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn send(&self, items: &[WorkItem]) {
        let now = Instant::now();
        self.lock()
            .extend(items.iter().map(|i| (i.clone(), 0, now)));
        self.ready.notify_waiters();
    }

    pub(super) async fn receive(&self, max: usize, wait: Duration) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.ready.notified();
            let (taken, next_due) = self.take(max);
            if !taken.is_empty() {
                return taken;
            }
            // Sleep until something is sent, a released item comes due, or the wait is over.
            let until = next_due
                .map(|d| tokio::time::Instant::from_std(d).min(deadline))
                .unwrap_or(deadline);
            if tokio::time::timeout_at(until, notified).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return self.take(max).0;
            }
        }
    }

    /// Takes up to `max` due items; also says when the earliest held-back item comes due.
    fn take(&self, max: usize) -> (Vec<Delivery>, Option<Instant>) {
        let now = Instant::now();
        let mut q = self.lock();
        let mut out = Vec::new();
        let mut next_due: Option<Instant> = None;
        let mut i = 0;
        while i < q.len() && out.len() < max {
            if q[i].2 <= now {
                if let Some((item, count, _)) = q.remove(i) {
                    out.push(Delivery {
                        item,
                        receive_count: count + 1,
                        receipt: Receipt::Local,
                    });
                }
            } else {
                next_due = Some(next_due.map_or(q[i].2, |d| d.min(q[i].2)));
                i += 1;
            }
        }
        (out, next_due)
    }

    pub(super) fn release(&self, item: WorkItem, receive_count: u32, after: Duration) {
        self.lock()
            .push_back((item, receive_count, Instant::now() + after));
        self.ready.notify_waiters();
    }

    pub(super) fn max_receives(&self) -> u32 {
        self.max_receives
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(index: usize) -> WorkItem {
        WorkItem {
            job: "j".into(),
            index,
        }
    }

    #[tokio::test]
    async fn delivers_in_order_counts_receives_and_holds_released_items() {
        let q = LocalQueue::new(3);
        q.send(&[item(0), item(1), item(2)]);
        let got = q.receive(2, Duration::ZERO).await;
        assert_eq!(
            got.iter()
                .map(|d| (d.item.index, d.receive_count))
                .collect::<Vec<_>>(),
            [(0, 1), (1, 1)]
        );
        let mut got = got.into_iter();
        let first = got.next().expect("first");
        q.release(first.item, first.receive_count, Duration::from_millis(150));
        // Item 2 is due now; item 0 only after its hold.
        let now = q.receive(5, Duration::ZERO).await;
        assert_eq!(now.iter().map(|d| d.item.index).collect::<Vec<_>>(), [2]);
        let started = Instant::now();
        let later = q.receive(5, Duration::from_secs(2)).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(
            later
                .iter()
                .map(|d| (d.item.index, d.receive_count))
                .collect::<Vec<_>>(),
            [(0, 2)]
        );
        assert!(q.receive(1, Duration::from_millis(20)).await.is_empty());
    }
}
