//! Asynchronous jobs: several images accepted at once, translated in the background, their
//! progress readable as JSON or as Server-Sent Events.
//!
//! The instance that accepted a job runs it and keeps it in memory; it also publishes the job's
//! state as `jobs/<id>.json` in the shared results directory (EFS in production) when the job
//! starts and after every image, so any instance behind the load balancer can answer
//! `GET /v1/jobs/{id}` and stream its events. The oldest jobs are forgotten (and their files
//! removed) beyond `MAX_JOBS` per instance.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::error::ErrorDetail;

const MAX_JOBS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ItemStatus {
    Queued,
    Done,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// `jobs/<id>.json` in the shared store; `None` keeps the job in memory only.
    file: Option<PathBuf>,
    /// Held while a snapshot is taken and written, so a later state never loses to an earlier one.
    publishing: Mutex<()>,
}

/// The JSON view of a job (also the shared file's content).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobView {
    pub(crate) id: String,
    pub(crate) status: String,
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

    /// Records a finished item and publishes the job (blocking file I/O). The item counts as
    /// finished even when publishing fails (the error is returned for the log). Call `announce`
    /// after it, so whoever sees the event finds the same state on every instance.
    pub(crate) fn record(&self, item: &ItemState) -> std::io::Result<()> {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = items.get_mut(item.index) {
            *slot = item.clone();
        }
        drop(items);
        self.publish()
    }

    /// Tells the event streams that `item` finished.
    pub(crate) fn announce(&self, item: ItemState) {
        // No subscriber is fine: the state is kept for GET and late streams.
        let _ = self.events.send(item);
    }

    /// Writes the current state to the shared store (temp file + rename: readers on other
    /// instances see the previous state or this one, never a torn file). Blocking file I/O.
    pub(crate) fn publish(&self) -> std::io::Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let _order = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let json = serde_json::to_vec(&self.view()).map_err(std::io::Error::other)?;
        brs_image::files::write_atomic(path, &json)
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
            }
            .into(),
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
    /// Where jobs are published for other instances (`<results_dir>/jobs`).
    dir: Option<PathBuf>,
}

/// Job ids are 24 lowercase hex digits; anything else never touches the disk.
fn is_job_id(id: &str) -> bool {
    id.len() == 24
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Jobs {
    /// Jobs published under `dir` (shared by every instance using the same results directory).
    pub(crate) fn shared(dir: &Path) -> Jobs {
        Jobs {
            dir: Some(dir.to_path_buf()),
            ..Jobs::default()
        }
    }

    /// A job another instance (or this one) published, as last written. Blocking file I/O.
    pub(crate) fn read_published(&self, id: &str) -> Option<JobView> {
        let dir = self.dir.as_ref().filter(|_| is_job_id(id))?;
        let bytes = std::fs::read(dir.join(format!("{id}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

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
            file: self.dir.as_ref().map(|d| d.join(format!("{id}.json"))),
            id: id.clone(),
            items: Mutex::new(items),
            events,
            publishing: Mutex::new(()),
        });
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.0.insert(id.clone(), job.clone());
        t.1.push_back(id);
        while t.1.len() > MAX_JOBS {
            if let Some(old) = t.1.pop_front().and_then(|old| t.0.remove(&old))
                && let Some(file) = &old.file
            {
                let _ = std::fs::remove_file(file);
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
            let item = ItemState {
                index,
                filename: None,
                status: ItemStatus::Done,
                result_url: Some("/v1/results/x".into()),
                cached: Some(false),
                error: None,
            };
            job.record(&item).expect("nothing to publish");
            job.announce(item);
        }
        assert_eq!(rx.try_recv().expect("event").index, 0);
        let v = job.view();
        assert_eq!((v.status.as_str(), v.done, v.total), ("done", 2, 2));
        assert_ne!(jobs.create(vec![None]).id, job.id);
    }
}
