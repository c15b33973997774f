//! Fairness between clients where their images wait: deficit round-robin over the time their work
//! actually took, instead of first come, first served. Per-client rate limits and in-flight caps
//! bound what one client may ask for, but several clients each within their limits can still keep
//! a FIFO busy for minutes; and plain turns (one image per client per round) give a client whose
//! images take a second to decode as many turns as one whose images take a millisecond.
//!
//! Each place where images wait for a resource ([`FairGate`] for the decode permits, [`Drr`] for
//! each style's batcher) keeps a [`Ledger`] of what each client (its tenant id, the same for its
//! interactive requests and its jobs) used of that resource: the decode time of its images there,
//! its images' shares of the forward passes at a batcher. Charged after the fact, since nobody
//! knows beforehand how long an image takes. Clients with something waiting take turns: a client
//! in debt is passed over and its debt lowered by one quantum (`clients.turn_quantum`) each time
//! its turn comes round; one out of debt has its next image served. So over time clients with work
//! waiting get equal *time*, and one whose images cost ten times more gets a tenth of the turns.
//! Nothing is held back when nobody else waits: if every waiting client is in debt, the rounds it
//! would take the least indebted to clear its debt pass at once. Credit is never banked (an
//! account is at most out of debt), so a client that was idle cannot come back and monopolise the
//! resource; a debt is forgotten once its client has used nothing and waited nowhere for a minute.
//!
//! Why a ledger per resource and not one per client across them: a client alone at the batcher
//! would have the decode debt it owes the clients waiting at the decode permits wiped by that
//! batcher's "nobody else waits" rule, and each resource's turns are its own to give.
//!
//! The decode permits also cap what one client may hold at once (`clients.max_decodes`), so one
//! client's pixel bombs never hold every permit: the others always find one within a decode.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Whose work an item is: the client's tenant id (`AppState::tenant`), the same for its
/// interactive requests and its jobs.
pub(crate) type Owner = Arc<str>;

/// A debt untouched this long (its client used nothing and waited nowhere) is forgotten, so
/// memory follows active clients only.
const FORGET_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Account {
    /// Nanoseconds of the resource's time used and not yet repaid by turns passed over
    /// (integers: repaying a quantum at a time comes out exactly even).
    debt: u64,
    /// When it last changed.
    touched: Instant,
}

/// What each client owes one resource: the time it used beyond its turns. Lives under the lock of
/// the queue it orders.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// Nanoseconds a turn passed over repays.
    quantum: u64,
    accounts: HashMap<Owner, Account>,
    /// When idle accounts were last looked for.
    pruned: Instant,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Ledger {
    /// `quantum`: what one turn passed over repays (at least a microsecond).
    pub(crate) fn new(quantum: Duration) -> Ledger {
        Ledger {
            quantum: nanos(quantum).max(1_000),
            accounts: HashMap::new(),
            pruned: Instant::now(),
        }
    }

    /// Charges `owner` for `used` of the resource's time.
    pub(crate) fn charge(&mut self, owner: &Owner, used: Duration) {
        let now = Instant::now();
        let a = self.accounts.entry(owner.clone()).or_insert(Account {
            debt: 0,
            touched: now,
        });
        a.debt = a.debt.saturating_add(nanos(used));
        a.touched = now;
        if now.duration_since(self.pruned) >= FORGET_AFTER {
            self.accounts
                .retain(|_, a| now.duration_since(a.touched) < FORGET_AFTER);
            self.accounts.shrink_to_fit();
            self.pruned = now;
        }
    }

    fn debt(&self, owner: &Owner) -> u64 {
        self.accounts.get(owner).map_or(0, |a| a.debt)
    }

    /// Lowers `owner`'s debt by `nanos`; an account out of debt is dropped (credit is not kept).
    fn repay(&mut self, owner: &Owner, nanos: u64) {
        if let Some(a) = self.accounts.get_mut(owner) {
            a.debt = a.debt.saturating_sub(nanos);
            a.touched = Instant::now();
            if a.debt == 0 {
                self.accounts.remove(owner);
            }
        }
    }
}

/// Items queued per owner, served by deficit round-robin against a [`Ledger`].
#[derive(Debug)]
pub(crate) struct Drr<T> {
    queues: HashMap<Owner, VecDeque<T>>,
    /// Owners with something queued, in turn order.
    turns: VecDeque<Owner>,
    len: usize,
}

impl<T> Default for Drr<T> {
    fn default() -> Self {
        Drr {
            queues: HashMap::new(),
            turns: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> Drr<T> {
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

    /// The next item by deficit round-robin (see the module docs).
    pub(crate) fn pop(&mut self, ledger: &mut Ledger) -> Option<T> {
        self.pop_where(ledger, |_| true).map(|(_, item)| item)
    }

    /// Like [`pop`](Self::pop), among the owners for which `may` holds (the others keep their
    /// items and their place, and are not repaid for the turns they cannot take); with its owner.
    pub(crate) fn pop_where(
        &mut self,
        ledger: &mut Ledger,
        may: impl Fn(&Owner) -> bool,
    ) -> Option<(Owner, T)> {
        if self.len == 0 {
            return None;
        }
        let q = ledger.quantum;
        // Each turn repays one quantum of the owner's debt; an owner out of debt is served. When a
        // whole round serves nobody, the rounds the least indebted owner still needs pass at once
        // (all but the last, which the second walk makes), so that walk serves someone.
        for round in 0..2 {
            if round == 1 {
                let Some(rounds) = self
                    .turns
                    .iter()
                    .filter(|o| may(o))
                    .map(|o| ledger.debt(o).div_ceil(q))
                    .min()
                else {
                    // Nobody waiting may be served.
                    return None;
                };
                let grant = rounds.saturating_sub(1).saturating_mul(q);
                for o in self.turns.iter().filter(|o| may(o)) {
                    ledger.repay(o, grant);
                }
            }
            for _ in 0..self.turns.len() {
                let owner = self.turns.pop_front()?;
                if may(&owner) {
                    ledger.repay(&owner, q);
                    if ledger.debt(&owner) == 0 {
                        return self.take(owner);
                    }
                }
                self.turns.push_back(owner);
            }
        }
        None
    }

    /// `owner`'s oldest item; the owner goes to the end of the turns if it has more.
    fn take(&mut self, owner: Owner) -> Option<(Owner, T)> {
        let queue = self.queues.get_mut(&owner)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&owner);
        } else {
            self.turns.push_back(owner.clone());
        }
        if item.is_some() {
            self.len -= 1;
        }
        item.map(|i| (owner, i))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[derive(Debug)]
struct GateState {
    free: usize,
    /// Most units one owner may hold at once.
    per_owner: usize,
    /// Units held, by owner.
    held: HashMap<Owner, usize>,
    waiting: Drr<oneshot::Sender<GatePermit>>,
    /// The time owners held their units.
    ledger: Ledger,
}

impl GateState {
    fn hold(&mut self, owner: &Owner) {
        *self.held.entry(owner.clone()).or_default() += 1;
    }

    fn unhold(&mut self, owner: &Owner) {
        if let Some(n) = self.held.get_mut(owner) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(owner);
            }
        }
    }
}

type Shared = Arc<Mutex<GateState>>;

fn lock(gate: &Shared) -> std::sync::MutexGuard<'_, GateState> {
    gate.lock().unwrap_or_else(|e| e.into_inner())
}

/// A semaphore whose waiters are served by deficit round-robin on the time owners held their
/// units, rather than in arrival order, and of which no owner may hold more than its share.
#[derive(Debug, Clone)]
pub(crate) struct FairGate {
    state: Shared,
}

/// One unit of a [`FairGate`], given back (to the next owner in turn) when dropped.
#[derive(Debug)]
pub(crate) struct GatePermit {
    /// `None` once handed on, so dropping it gives nothing back twice.
    gate: Option<Shared>,
    owner: Owner,
}

impl GatePermit {
    /// Charges the permit's owner for `used` of the gate's time: call before dropping it, so the
    /// next turn already counts it.
    pub(crate) fn charge(&self, used: Duration) {
        if let Some(gate) = &self.gate {
            lock(gate).ledger.charge(&self.owner, used);
        }
    }
}

impl Drop for GatePermit {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            release(&gate, &self.owner);
        }
    }
}

/// Gives `owner`'s unit to the next waiter by deficit round-robin among those under their cap,
/// skipping waiters that gave up (their receiver is gone, so the send fails and returns the
/// unit); with nobody to give it to, it becomes free.
fn release(gate: &Shared, owner: &Owner) {
    let mut s = lock(gate);
    s.unhold(owner);
    loop {
        let next = {
            let GateState {
                held,
                per_owner,
                waiting,
                ledger,
                ..
            } = &mut *s;
            let cap = *per_owner;
            waiting.pop_where(ledger, |o| held.get(o).copied().unwrap_or(0) < cap)
        };
        let Some((next, tx)) = next else {
            s.free += 1;
            return;
        };
        s.hold(&next);
        let unit = GatePermit {
            gate: Some(gate.clone()),
            owner: next,
        };
        // Sent under the lock: a send to a waiter that is gone hands the unit straight back (and
        // it is disarmed here, so it does not take the lock again); a waiter that drops its
        // receiver after this send drops the unit with it, which releases it then.
        match tx.send(unit) {
            Ok(()) => return,
            Err(mut back) => {
                back.gate = None;
                s.unhold(&back.owner);
            }
        }
    }
}

impl FairGate {
    /// `permits` units, at most `per_owner` (at least 1) held by one owner at once; turns by
    /// deficit round-robin with `quantum` (see the module docs).
    pub(crate) fn new(permits: usize, per_owner: usize, quantum: Duration) -> FairGate {
        FairGate {
            state: Arc::new(Mutex::new(GateState {
                free: permits,
                per_owner: per_owner.max(1),
                held: HashMap::new(),
                waiting: Drr::default(),
                ledger: Ledger::new(quantum),
            })),
        }
    }

    /// Waits for a unit: at once if one is free and `owner` holds fewer than its cap (a unit is
    /// only free when no waiter may take it), else in `owner`'s turn.
    pub(crate) async fn acquire(&self, owner: &Owner) -> GatePermit {
        let rx = {
            let mut s = lock(&self.state);
            if s.free > 0 && s.held.get(owner).copied().unwrap_or(0) < s.per_owner {
                s.free -= 1;
                s.hold(owner);
                return GatePermit {
                    gate: Some(self.state.clone()),
                    owner: owner.clone(),
                };
            }
            let (tx, rx) = oneshot::channel();
            s.waiting.push(owner, tx);
            rx
        };
        match rx.await {
            Ok(permit) => permit,
            // Unreachable while this gate lives: a queued sender is only dropped after a send.
            Err(_) => GatePermit {
                gate: None,
                owner: owner.clone(),
            },
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
    use super::*;

    fn owner(s: &str) -> Owner {
        Arc::from(s)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn owners_without_debt_take_turns_and_keep_their_own_order() {
        let (a, b, c) = (owner("a"), owner("b"), owner("c"));
        let mut ledger = Ledger::new(ms(10));
        let mut q = Drr::default();
        for i in 1..=4 {
            q.push(&a, format!("a{i}"));
        }
        q.push(&b, "b1".to_string());
        q.push(&c, "c1".to_string());
        q.push(&b, "b2".to_string());
        let order: Vec<String> = std::iter::from_fn(|| q.pop(&mut ledger)).collect();
        assert_eq!(order, ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]);
        assert!(q.is_empty());
        // An owner that emptied its queue joins the end again.
        q.push(&a, "a5".to_string());
        q.push(&b, "b3".to_string());
        assert_eq!(q.pop(&mut ledger).as_deref(), Some("a5"));
        assert_eq!(q.pop(&mut ledger).as_deref(), Some("b3"));
        assert_eq!(q.pop(&mut ledger), None);
    }

    #[test]
    fn turns_follow_the_time_used() {
        // a's images cost 100 ms, b's 10 ms: with a quantum of 10 ms, b is served ten times for
        // each of a's images, however the two are queued.
        let (a, b) = (owner("a"), owner("b"));
        let mut ledger = Ledger::new(ms(10));
        let mut q = Drr::default();
        for i in 0..40 {
            q.push(&a, ("a", i));
            q.push(&b, ("b", i));
        }
        let mut order = String::new();
        for _ in 0..33 {
            let (who, _) = q.pop(&mut ledger).expect("item");
            let cost = if who == "a" { ms(100) } else { ms(10) };
            ledger.charge(&owner(who), cost);
            order.push_str(who);
        }
        assert_eq!(order.matches('a').count(), 3, "{order}");
        assert_eq!(order.matches('b').count(), 30, "{order}");
        // Alone, a debtor is served at once: nothing waits for nothing.
        let mut alone = Drr::default();
        alone.push(&a, 1);
        ledger.charge(&a, Duration::from_secs(100));
        assert_eq!(alone.pop(&mut ledger), Some(1));
    }

    #[test]
    fn an_idle_client_banks_no_credit_and_debts_are_forgotten() {
        let (a, b) = (owner("a"), owner("b"));
        let mut ledger = Ledger::new(ms(10));
        let mut q = Drr::default();
        // b was served many turns while in debt: its debt is repaid, never turned into credit.
        ledger.charge(&b, ms(15));
        for i in 0..5 {
            q.push(&b, i);
        }
        while q.pop(&mut ledger).is_some() {}
        assert_eq!(ledger.debt(&b), 0);
        assert!(
            ledger.accounts.is_empty(),
            "an account out of debt is dropped"
        );
        // A debt left alone for a minute is forgotten at the next charge.
        ledger.charge(&a, ms(50));
        assert_eq!(ledger.debt(&a), 50_000_000);
        let long_ago = Instant::now()
            .checked_sub(FORGET_AFTER)
            .expect("uptime over a minute");
        if let Some(acc) = ledger.accounts.get_mut(&a) {
            acc.touched = long_ago;
        }
        ledger.pruned = long_ago;
        ledger.charge(&b, ms(1));
        assert_eq!(ledger.debt(&a), 0);
        assert_eq!(ledger.debt(&b), 1_000_000);
    }

    async fn soon<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::time::timeout(Duration::from_millis(200), f)
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_late_owner_is_served_before_an_early_flood() {
        let gate = FairGate::new(1, 1, ms(10));
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
    async fn one_owner_holds_at_most_its_cap() {
        let gate = FairGate::new(3, 2, ms(10));
        let (a, b) = (owner("a"), owner("b"));
        let a1 = gate.acquire(&a).await;
        let _a2 = gate.acquire(&a).await;
        // A unit is free, but a holds its two.
        assert!(soon(gate.acquire(&a)).await.is_none());
        assert_eq!(gate.available(), 1);
        let b1 = soon(gate.acquire(&b)).await.expect("b finds the free unit");
        assert_eq!(b1.owner.as_ref(), "b");
        // a's third waits for one of a's own, not for b's.
        let waiter = {
            let (gate, a) = (gate.clone(), a.clone());
            tokio::spawn(async move { gate.acquire(&a).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(b1);
        assert_eq!(gate.available(), 1, "b's unit is not a's to take");
        drop(a1);
        let a3 = soon(waiter).await.expect("served").expect("task");
        assert_eq!(a3.owner.as_ref(), "a");
        assert_eq!(gate.available(), 1);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_loses_no_unit() {
        let gate = FairGate::new(1, 1, ms(10));
        let (a, b) = (owner("a"), owner("b"));
        let held = gate.acquire(&a).await;
        // b gives up while waiting; the unit must go on to the next waiter, then back to free.
        assert!(soon(gate.acquire(&b)).await.is_none());
        let c = owner("c");
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.acquire(&c).await })
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
