//! The store's health as this instance sees it. Every store operation reports its outcome; after
//! a few failures in a row the instance stops calling itself ready (the load balancer sends
//! traffic elsewhere) while translations it serves are still answered, and a probe (write, read,
//! delete of a small object) brings it back as soon as the store answers again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::metrics::Metrics;
use crate::store::namespaces::HEALTH;
use crate::store::{Key, Store, StoreError};

/// Consecutive failures after which the store counts as down.
const FAILURES_TO_UNHEALTHY: u32 = 3;
/// How often an unhealthy store is probed.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub(crate) struct StoreHealth {
    failures: AtomicU32,
    unhealthy: AtomicBool,
}

impl StoreHealth {
    pub(crate) fn is_healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::SeqCst)
    }

    /// Records one store operation's outcome (and counts failures in `metrics`).
    pub(crate) fn observe<T>(&self, metrics: &Metrics, r: &Result<T, StoreError>) {
        match r {
            Ok(_) => {
                self.failures.store(0, Ordering::SeqCst);
                if self.unhealthy.swap(false, Ordering::SeqCst) {
                    tracing::info!("the store answers again; ready");
                }
            }
            Err(e) => {
                metrics.store_error(&e.op().to_string());
                let n = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= FAILURES_TO_UNHEALTHY && !self.unhealthy.swap(true, Ordering::SeqCst) {
                    tracing::error!(error = %e, failures = n, "the store keeps failing; not ready");
                }
            }
        }
    }
}

/// Probes the store every [`PROBE_EVERY`] while it is unhealthy, until `health` is dropped.
pub(crate) fn spawn_prober(
    store: Arc<Store>,
    health: std::sync::Weak<StoreHealth>,
    metrics: Arc<Metrics>,
    instance: String,
) {
    tokio::spawn(async move {
        let Some(key) = Key::new(format!("{HEALTH}/{instance}")) else {
            return;
        };
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            let Some(h) = health.upgrade() else { return };
            if h.is_healthy() {
                continue;
            }
            let r = probe(&store, &key).await;
            h.observe(&metrics, &r);
        }
    });
}

async fn probe(store: &Store, key: &Key) -> Result<(), StoreError> {
    store.put(key, Bytes::from_static(b"ok")).await?;
    store.get(key).await?;
    store.delete(key).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Op;

    fn failure() -> Result<(), StoreError> {
        Err(StoreError::Io {
            op: Op::Put,
            key: "k".into(),
            source: std::io::Error::other("disk full"),
        })
    }

    #[test]
    fn a_few_failures_in_a_row_make_it_unhealthy_and_one_success_heals() {
        let (h, m) = (StoreHealth::default(), Metrics::new());
        h.observe(&m, &failure());
        h.observe(&m, &failure());
        assert!(h.is_healthy());
        h.observe(&m, &Ok(()));
        h.observe(&m, &failure());
        h.observe(&m, &failure());
        assert!(h.is_healthy(), "a success in between resets the count");
        h.observe(&m, &failure());
        assert!(!h.is_healthy());
        h.observe(&m, &Ok(()));
        assert!(h.is_healthy());
        let text = m.render(&crate::metrics::Gauges::default());
        assert!(
            text.contains("brs_store_errors_total{op=\"put\"} 5"),
            "{text}"
        );
    }
}
