//! Asynchronous jobs: several images accepted at once, translated in the background, their
//! progress readable as JSON or as Server-Sent Events. The job table is per instance (results are
//! in the shared store, so the result URLs work on any instance); the oldest finished jobs are
//! forgotten beyond `MAX_JOBS`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::error::ErrorDetail;

const MAX_JOBS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ItemStatus {
    Queued,
    Done,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ItemState {
    pub(crate) index: usize,
    pub(crate) filename: Option<String>,
    pub(crate) status: ItemStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) result_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cached: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorDetail>,
}

#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: String,
    items: Mutex<Vec<ItemState>>,
    events: broadcast::Sender<ItemState>,
}

/// The JSON view of a job.
#[derive(Debug, Serialize)]
pub(crate) struct JobView {
    pub(crate) id: String,
    pub(crate) status: &'static str,
    pub(crate) done: usize,
    pub(crate) total: usize,
    pub(crate) events_url: String,
    pub(crate) items: Vec<ItemState>,
}

impl Job {
    pub(crate) fn items(&self) -> Vec<ItemState> {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ItemState> {
        self.events.subscribe()
    }

    /// Records a finished item and tells the event streams.
    pub(crate) fn finish(&self, item: ItemState) {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = items.get_mut(item.index) {
            *slot = item.clone();
        }
        drop(items);
        // No subscriber is fine: the state is kept for GET and late streams.
        let _ = self.events.send(item);
    }

    pub(crate) fn view(&self) -> JobView {
        let items = self.items();
        let done = items
            .iter()
            .filter(|i| i.status != ItemStatus::Queued)
            .count();
        JobView {
            id: self.id.clone(),
            status: if done == items.len() {
                "done"
            } else {
                "running"
            },
            done,
            total: items.len(),
            events_url: format!("/v1/jobs/{}/events", self.id),
            items,
        }
    }
}

/// Jobs by id, and their ids oldest first (for forgetting).
type Table = (HashMap<String, Arc<Job>>, VecDeque<String>);

#[derive(Debug, Default)]
pub(crate) struct Jobs {
    table: Mutex<Table>,
    counter: AtomicU64,
}

impl Jobs {
    pub(crate) fn create(&self, filenames: Vec<Option<String>>) -> Arc<Job> {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // Unguessable enough for a job id: nobody can list another user's job by counting.
        let mut h = Sha256::new();
        h.update(nanos.to_le_bytes());
        h.update(n.to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        let id = hex::encode(&h.finalize()[..12]);
        let items = filenames
            .into_iter()
            .enumerate()
            .map(|(index, filename)| ItemState {
                index,
                filename,
                status: ItemStatus::Queued,
                result_url: None,
                cached: None,
                error: None,
            })
            .collect::<Vec<_>>();
        let (events, _) = broadcast::channel(items.len().max(1) * 2);
        let job = Arc::new(Job {
            id: id.clone(),
            items: Mutex::new(items),
            events,
        });
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.0.insert(id.clone(), job.clone());
        t.1.push_back(id);
        while t.1.len() > MAX_JOBS {
            if let Some(old) = t.1.pop_front() {
                t.0.remove(&old);
            }
        }
        job
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .get(id)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishing_items_updates_view_and_events() {
        let jobs = Jobs::default();
        let job = jobs.create(vec![Some("a.png".into()), None]);
        assert_eq!(
            jobs.get(&job.id).map(|j| j.id.clone()),
            Some(job.id.clone())
        );
        let mut rx = job.subscribe();
        assert_eq!(job.view().status, "running");
        for index in 0..2 {
            job.finish(ItemState {
                index,
                filename: None,
                status: ItemStatus::Done,
                result_url: Some("/v1/results/x".into()),
                cached: Some(false),
                error: None,
            });
        }
        assert_eq!(rx.try_recv().expect("event").index, 0);
        let v = job.view();
        assert_eq!((v.status, v.done, v.total), ("done", 2, 2));
        assert_ne!(jobs.create(vec![None]).id, job.id);
    }
}
