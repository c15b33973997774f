//! Expiry and the size cap of the store, by whole hours: every object lives under the hour its
//! id was made (`results/<hour>/...`), so removing what is too old means listing a few dozen hour
//! names, not walking the store, and the size cap removes the oldest hours first.
//!
//! One instance prunes at a time: each tries to take a lease object (`leases/prune`, written only
//! if absent) every period; whoever holds it prunes, the others skip. A closed hour's size is
//! measured once and remembered in `sizes/<hour>`, so even the size cap reads little.
//!
//! Only the fs store is pruned: a bucket's lifecycle rules expire S3 objects, and the roles on
//! AWS hold no grant for this module's `leases/` and `sizes/`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::ids::Hour;
use crate::metrics::Metrics;
use crate::store::{Key, Store, StoreError, namespaces};

/// Hours younger than this are still being written: measured live, never cached, never evicted
/// for size.
const OPEN_HOURS: i64 = 2;

/// What to keep.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Hours kept; `None` keeps everything.
    pub(crate) max_age_hours: Option<u64>,
    /// Bytes kept; `None` means no cap.
    pub(crate) max_bytes: Option<u64>,
}

impl Policy {
    pub(crate) fn from_config(cfg: &crate::config::Config) -> Policy {
        Policy {
            max_age_hours: (!cfg.results_max_age.is_zero())
                .then(|| cfg.results_max_age.as_secs().div_ceil(3600).max(1)),
            max_bytes: (cfg.results_max_bytes > 0).then_some(cfg.results_max_bytes),
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.max_age_hours.is_some() || self.max_bytes.is_some()
    }

    /// How often instances try to prune: a twentieth of the age, between a minute and an hour.
    pub(crate) fn period(&self) -> Duration {
        let age = self.max_age_hours.unwrap_or(24) * 3600;
        Duration::from_secs((age / 20).clamp(60, 3600))
    }
}

fn key(s: String) -> Result<Key, StoreError> {
    Key::new(s.clone()).ok_or_else(|| StoreError::Remote {
        op: crate::store::Op::List,
        key: s,
        message: "not a valid key".into(),
    })
}

/// The hours present in any namespace, oldest first.
async fn hours(store: &Store) -> Result<Vec<Hour>, StoreError> {
    let mut all = Vec::new();
    for ns in namespaces::by_hour() {
        for name in store.children(&key(ns.into())?).await? {
            if let Some(h) = Hour::parse(&name) {
                all.push(h);
            }
        }
    }
    all.sort();
    all.dedup();
    Ok(all)
}

/// Deletes every object of `hour`; returns how many.
async fn remove_hour(store: &Store, hour: Hour) -> Result<u64, StoreError> {
    let mut n = 0;
    for ns in namespaces::by_hour() {
        for entry in store.list(&key(format!("{ns}/{hour}"))?).await? {
            store.delete(&entry.key).await?;
            n += 1;
        }
    }
    store.delete(&key(format!("sizes/{hour}"))?).await?;
    Ok(n)
}

/// Bytes stored under `hour`, from its remembered size when it is closed.
async fn hour_bytes(store: &Store, hour: Hour, now: Hour) -> Result<u64, StoreError> {
    let closed = hour.hours_until(now) >= OPEN_HOURS;
    let memo = key(format!("sizes/{hour}"))?;
    if closed
        && let Some(b) = store.get(&memo).await?
        && let Some(n) = std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    {
        return Ok(n);
    }
    let mut total = 0;
    for ns in namespaces::by_hour() {
        total += store
            .list(&key(format!("{ns}/{hour}"))?)
            .await?
            .iter()
            .map(|e| e.bytes)
            .sum::<u64>();
    }
    if closed {
        store.put(&memo, Bytes::from(total.to_string())).await?;
    }
    Ok(total)
}

/// One pruning pass; returns the number of objects removed.
pub(crate) async fn prune_once(
    store: &Store,
    policy: &Policy,
    now: Hour,
) -> Result<u64, StoreError> {
    let mut removed = 0;
    let mut kept = Vec::new();
    for hour in hours(store).await? {
        let expired = policy
            .max_age_hours
            .is_some_and(|max| hour.hours_until(now) >= max as i64);
        if expired {
            removed += remove_hour(store, hour).await?;
        } else {
            kept.push(hour);
        }
    }
    if let Some(cap) = policy.max_bytes {
        let mut sized = Vec::with_capacity(kept.len());
        for hour in kept {
            sized.push((hour, hour_bytes(store, hour, now).await?));
        }
        let mut total: u64 = sized.iter().map(|(_, b)| b).sum();
        for (hour, bytes) in sized {
            if total <= cap || hour.hours_until(now) < OPEN_HOURS {
                break;
            }
            removed += remove_hour(store, hour).await?;
            total -= bytes;
        }
    }
    Ok(removed)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Takes the pruning lease for `period` unless another instance holds an unexpired one.
pub(crate) async fn take_lease(store: &Store, period: Duration) -> Result<bool, StoreError> {
    let lease = key("leases/prune".into())?;
    let until = Bytes::from((unix_now() + period.as_secs()).to_string());
    if store.put_if_absent(&lease, until.clone()).await? {
        return Ok(true);
    }
    let held_until: u64 = store
        .get(&lease)
        .await?
        .and_then(|b| {
            std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        })
        .unwrap_or(0);
    if held_until > unix_now() {
        return Ok(false);
    }
    // Expired: remove it and race the other instances for a fresh one.
    store.delete(&lease).await?;
    store.put_if_absent(&lease, until).await
}

/// Every period, the instance that takes the lease prunes.
pub(crate) fn spawn(store: Arc<Store>, metrics: Arc<Metrics>, policy: Policy) {
    if !policy.is_active() {
        return;
    }
    tokio::spawn(async move {
        let period = policy.period();
        loop {
            tokio::time::sleep(period).await;
            let run = async {
                if take_lease(&store, period).await? {
                    prune_once(&store, &policy, Hour::now()).await
                } else {
                    Ok(0)
                }
            };
            match run.await {
                Ok(n) => metrics.pruned(n),
                Err(e) => tracing::warn!(error = %e, "pruning the store failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Backend, FsStore};

    async fn put(store: &Store, k: &str, n: usize) {
        store
            .put(&Key::new(k).expect("key"), Bytes::from(vec![7u8; n]))
            .await
            .expect("put");
    }

    #[tokio::test]
    async fn old_hours_go_whole_and_the_cap_takes_the_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(Backend::Fs(FsStore::open(dir.path()).expect("fs")));
        let now = Hour::parse("2026120212").expect("hour");
        for (ago, bytes) in [(100u64, 10usize), (30, 20), (20, 30), (10, 40), (0, 50)] {
            let h = now.minus(ago);
            put(&store, &format!("results/{h}/a.png"), bytes).await;
            put(&store, &format!("jobs/{h}/j/manifest.json"), 1).await;
        }
        let age_only = Policy {
            max_age_hours: Some(48),
            max_bytes: None,
        };
        assert_eq!(prune_once(&store, &age_only, now).await.expect("prune"), 2);
        assert_eq!(hours(&store).await.expect("hours").len(), 4);
        // 21 + 31 + 41 + 51 = 144 bytes; a cap of 100 removes the two oldest closed hours.
        let capped = Policy {
            max_age_hours: Some(48),
            max_bytes: Some(100),
        };
        assert_eq!(prune_once(&store, &capped, now).await.expect("prune"), 4);
        let left: Vec<String> = hours(&store)
            .await
            .expect("hours")
            .iter()
            .map(|h| h.to_string())
            .collect();
        assert_eq!(left, [now.minus(10).to_string(), now.to_string()]);
        // The size of a closed hour was remembered.
        let memo = Key::new(format!("sizes/{}", now.minus(10))).expect("key");
        assert_eq!(
            store.get(&memo).await.expect("get").as_deref(),
            Some(&b"41"[..])
        );
    }

    #[tokio::test]
    async fn one_instance_holds_the_lease() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(Backend::Fs(FsStore::open(dir.path()).expect("fs")));
        assert!(
            take_lease(&store, Duration::from_secs(60))
                .await
                .expect("lease")
        );
        assert!(
            !take_lease(&store, Duration::from_secs(60))
                .await
                .expect("lease")
        );
        // An expired lease is taken over.
        put(&store, "leases/prune", 0).await;
        store
            .put(&Key::new("leases/prune").expect("key"), Bytes::from("5"))
            .await
            .expect("put");
        assert!(
            take_lease(&store, Duration::from_secs(60))
                .await
                .expect("lease")
        );
    }
}
