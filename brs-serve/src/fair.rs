//! Fairness between clients where their images wait: round-robin instead of first come, first
//! served. Per-client rate limits and in-flight caps bound what one client may ask for, but several
//! clients each within their limits can still keep a FIFO busy for minutes; served in turns, a
//! client's image waits behind at most one image of each other client that has work waiting.
//! Used for the decode permits ([`FairGate`]) and the batcher's lanes ([`RoundRobin`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Whose work an item is: the client's tenant id (`AppState::tenant`), the same for its
/// interactive requests and its jobs.
pub(crate) type Owner = Arc<str>;

/// Items queued per owner, taken one per owner in turn.
#[derive(Debug)]
pub(crate) struct RoundRobin<T> {
    queues: HashMap<Owner, VecDeque<T>>,
    /// Owners with something queued, the next to be served first.
    turns: VecDeque<Owner>,
    len: usize,
}

impl<T> Default for RoundRobin<T> {
    fn default() -> Self {
        RoundRobin {
            queues: HashMap::new(),
            turns: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> RoundRobin<T> {
    /// Queues `item` behind `owner`'s earlier items; an owner with nothing queued joins the end
    /// of the turns.
    pub(crate) fn push(&mut self, owner: &Owner, item: T) {
        let queue = self.queues.entry(owner.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(owner.clone());
        }
        queue.push_back(item);
        self.len += 1;
    }

    /// The oldest item of the owner whose turn it is; that owner goes to the end of the turns if
    /// it has more.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let owner = self.turns.pop_front()?;
        let queue = self.queues.get_mut(&owner)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&owner);
        } else {
            self.turns.push_back(owner);
        }
        if item.is_some() {
            self.len -= 1;
        }
        item
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug)]
struct GateState {
    free: usize,
    waiting: RoundRobin<oneshot::Sender<GatePermit>>,
}

type Shared = Arc<Mutex<GateState>>;

fn lock(gate: &Shared) -> std::sync::MutexGuard<'_, GateState> {
    gate.lock().unwrap_or_else(|e| e.into_inner())
}

/// A semaphore whose waiters are served in turns by owner rather than in arrival order.
#[derive(Debug, Clone)]
pub(crate) struct FairGate {
    state: Shared,
}

/// One unit of a [`FairGate`], given back (to the next owner in turn) when dropped.
#[derive(Debug)]
pub(crate) struct GatePermit {
    /// `None` once handed on, so dropping it gives nothing back twice.
    gate: Option<Shared>,
}

impl Drop for GatePermit {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            release(gate);
        }
    }
}

/// Hands a freed unit to the next waiter in turn, skipping waiters that gave up (their receiver
/// is gone, so the send fails and returns the unit); with nobody waiting, it becomes free.
fn release(gate: Shared) {
    let mut unit = GatePermit {
        gate: Some(gate.clone()),
    };
    loop {
        let next = {
            let mut s = lock(&gate);
            match s.waiting.pop() {
                Some(tx) => tx,
                None => {
                    s.free += 1;
                    unit.gate = None;
                    return;
                }
            }
        };
        // A waiter that drops its receiver after this send drops the permit with it, which
        // releases it again: no unit is lost either way.
        match next.send(unit) {
            Ok(()) => return,
            Err(back) => unit = back,
        }
    }
}

impl FairGate {
    pub(crate) fn new(permits: usize) -> FairGate {
        FairGate {
            state: Arc::new(Mutex::new(GateState {
                free: permits,
                waiting: RoundRobin::default(),
            })),
        }
    }

    /// Waits for a unit: at once if one is free and nobody waits, else in `owner`'s turn.
    pub(crate) async fn acquire(&self, owner: &Owner) -> GatePermit {
        let rx = {
            let mut s = lock(&self.state);
            if s.free > 0 && s.waiting.is_empty() {
                s.free -= 1;
                return GatePermit {
                    gate: Some(self.state.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            s.waiting.push(owner, tx);
            rx
        };
        match rx.await {
            Ok(permit) => permit,
            // Unreachable while this gate lives: a queued sender is only dropped after a send.
            Err(_) => GatePermit { gate: None },
        }
    }

    /// Units not held by anyone.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        lock(&self.state).free
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn owner(s: &str) -> Owner {
        Arc::from(s)
    }

    #[test]
    fn owners_take_turns_and_keep_their_own_order() {
        let (a, b, c) = (owner("a"), owner("b"), owner("c"));
        let mut rr = RoundRobin::default();
        for i in 1..=4 {
            rr.push(&a, format!("a{i}"));
        }
        rr.push(&b, "b1".to_string());
        rr.push(&c, "c1".to_string());
        rr.push(&b, "b2".to_string());
        let order: Vec<String> = std::iter::from_fn(|| rr.pop()).collect();
        assert_eq!(order, ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]);
        assert!(rr.is_empty());
        // An owner that emptied its queue joins the end again.
        rr.push(&a, "a5".to_string());
        rr.push(&b, "b3".to_string());
        assert_eq!(rr.pop().as_deref(), Some("a5"));
        assert_eq!(rr.pop().as_deref(), Some("b3"));
        assert_eq!(rr.pop(), None);
    }

    async fn soon<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::time::timeout(Duration::from_millis(200), f)
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_late_owner_is_served_before_an_early_flood() {
        let gate = FairGate::new(1);
        let (flood, late) = (owner("flood"), owner("late"));
        let held = gate.acquire(&flood).await;
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let spawn = |who: Owner, tag: &'static str| {
            let (gate, served) = (gate.clone(), served.clone());
            tokio::spawn(async move {
                let _p = gate.acquire(&who).await;
                served.lock().expect("lock").push(tag);
                tokio::time::sleep(Duration::from_millis(5)).await;
            })
        };
        for tag in ["f1", "f2", "f3"] {
            tasks.push(spawn(flood.clone(), tag));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tasks.push(spawn(late.clone(), "late"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(*served.lock().expect("lock"), ["f1", "late", "f2", "f3"]);
        assert_eq!(gate.available(), 1);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_loses_no_unit() {
        let gate = FairGate::new(1);
        let (a, b) = (owner("a"), owner("b"));
        let held = gate.acquire(&a).await;
        // b gives up while waiting; the unit must go on to the next waiter, then back to free.
        assert!(soon(gate.acquire(&b)).await.is_none());
        let waiter = {
            let gate = gate.clone();
            let a = a.clone();
            tokio::spawn(async move { gate.acquire(&a).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        let got = soon(waiter).await.expect("the live waiter is served");
        drop(got);
        assert_eq!(gate.available(), 1);
        let again = soon(gate.acquire(&b)).await;
        assert!(again.is_some(), "the unit is free again");
    }
}
