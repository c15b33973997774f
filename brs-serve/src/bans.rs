//! Turning away, for a while, a client that keeps breaking its limits: every refusal for a limit
//! (the error codes in `http::STRIKES`: its rate or in-flight cap, a body too large or too slow,
//! an image over the pixel limits) is a strike; `ban_after` strikes within `ban_window` ban the
//! client for `ban_for`, and a request while banned starts that wait again. A client that waits
//! as its `Retry-After` says is never held longer.
//!
//! Why: fair turns give every client within its limits an equal share of the generator, and a
//! client that floods, or sends bombs between accepted images, is within its limits often enough
//! to take one. Banned, it costs a header check per request instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::clients::ClientId;

/// When strikes turn into a ban (`[clients]` ban_after, ban_window, ban_for).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BanPolicy {
    /// Strikes within `window` that ban; 0: never.
    pub(crate) after: u32,
    pub(crate) window: Duration,
    pub(crate) ban_for: Duration,
}

#[derive(Debug)]
struct Record {
    /// Strikes since `since`, the first strike of the current window.
    strikes: u32,
    since: Instant,
    banned_until: Option<Instant>,
}

impl Record {
    fn idle(&self, now: Instant, window: Duration) -> bool {
        self.banned_until.is_none_or(|t| t <= now) && now.duration_since(self.since) > window
    }
}

#[derive(Debug)]
pub(crate) struct Bans {
    policy: BanPolicy,
    records: Mutex<HashMap<ClientId, Record>>,
}

impl Bans {
    pub(crate) fn new(policy: BanPolicy) -> Bans {
        Bans {
            policy,
            records: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientId, Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(wait)` when `id` is banned: how long it must now stay away (the whole ban again,
    /// since it came back early).
    pub(crate) fn check(&self, id: &ClientId, now: Instant) -> Result<(), Duration> {
        if self.policy.after == 0 {
            return Ok(());
        }
        let mut records = self.lock();
        match records.get_mut(id) {
            Some(Record {
                banned_until: Some(until),
                ..
            }) if *until > now => {
                *until = now + self.policy.ban_for;
                Err(self.policy.ban_for)
            }
            _ => Ok(()),
        }
    }

    /// Counts a refusal for `id`'s limits; true when it bans `id`.
    pub(crate) fn strike(&self, id: &ClientId, now: Instant) -> bool {
        let p = self.policy;
        if p.after == 0 {
            return false;
        }
        let mut records = self.lock();
        let r = records.entry(id.clone()).or_insert(Record {
            strikes: 0,
            since: now,
            banned_until: None,
        });
        if now.duration_since(r.since) > p.window {
            r.strikes = 0;
            r.since = now;
        }
        r.strikes += 1;
        if r.strikes < p.after {
            return false;
        }
        r.strikes = 0;
        r.since = now;
        r.banned_until = Some(now + p.ban_for);
        true
    }

    /// Forgets clients neither banned nor struck within the window, so memory follows the
    /// clients that misbehave now.
    pub(crate) fn forget_idle(&self, now: Instant) {
        let window = self.policy.window;
        let mut records = self.lock();
        records.retain(|_, r| !r.idle(now, window));
        records.shrink_to_fit();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn bans(after: u32) -> Bans {
        Bans::new(BanPolicy {
            after,
            window: 10 * S,
            ban_for: 30 * S,
        })
    }

    fn id(s: &str) -> ClientId {
        crate::clients::Clients::by_address(s.parse().expect("ip"))
    }

    #[test]
    fn strikes_within_the_window_ban_and_only_that_client() {
        let (b, t0) = (bans(3), Instant::now());
        let (a, other) = (id("198.51.100.1"), id("198.51.100.2"));
        assert!(!b.strike(&a, t0));
        assert!(!b.strike(&a, t0 + S));
        assert_eq!(b.check(&a, t0 + S), Ok(()));
        assert!(b.strike(&a, t0 + 2 * S), "the third strike bans");
        assert_eq!(b.check(&a, t0 + 3 * S), Err(30 * S));
        assert_eq!(b.check(&other, t0 + 3 * S), Ok(()));
    }

    #[test]
    fn strikes_spread_wider_than_the_window_do_not_ban() {
        let (b, t0) = (bans(3), Instant::now());
        let a = id("198.51.100.1");
        for k in 0..10 {
            assert!(!b.strike(&a, t0 + k * 6 * S), "strike {k}");
        }
        assert_eq!(b.check(&a, t0 + 60 * S), Ok(()));
    }

    #[test]
    fn coming_back_early_restarts_the_ban_and_waiting_ends_it() {
        let (b, t0) = (bans(1), Instant::now());
        let a = id("198.51.100.1");
        assert!(b.strike(&a, t0));
        // Back after 20 s of a 30 s ban: banned until 50 s.
        assert_eq!(b.check(&a, t0 + 20 * S), Err(30 * S));
        assert_eq!(b.check(&a, t0 + 49 * S), Err(30 * S));
        // Waited the 30 s it was told at 49 s.
        assert_eq!(b.check(&a, t0 + 79 * S + S), Ok(()));
    }

    #[test]
    fn off_never_bans_and_idle_clients_are_forgotten() {
        let (off, t0) = (bans(0), Instant::now());
        let a = id("198.51.100.1");
        for _ in 0..100 {
            assert!(!off.strike(&a, t0));
        }
        assert_eq!(off.check(&a, t0), Ok(()));
        let b = bans(2);
        b.strike(&a, t0);
        b.strike(&id("198.51.100.2"), t0);
        b.strike(&id("198.51.100.2"), t0);
        b.forget_idle(t0 + 11 * S);
        assert_eq!(b.len(), 1, "the banned client is kept, the other forgotten");
        b.forget_idle(t0 + 31 * S);
        assert_eq!(b.len(), 0);
    }
}
