//! Jobs: several images accepted at once, translated in the background by whichever worker takes
//! each image's message from the queue, their progress readable from any instance.
//!
//! Everything a job is lives in the store, under its id's hour:
//! ```text
//! inputs/<hour>/<job>/<index>            the uploaded images
//! jobs/<hour>/<job>/manifest.json        what was asked, by whom (hashed), which files
//! jobs/<hour>/<job>/items/<index>.json   one object per finished image, written once
//! results/<hour>/<job>-<index>.<ext>     the translations
//! ```
//! One object per finished image, rather than one job file rewritten, means two workers never
//! race on a read-modify-write, and a job's state is the manifest plus whatever items exist.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::error::ServeError;
use crate::ids::{Hour, hour_of};
use crate::pipeline::Request;
use crate::queue::{Queue, WorkItem};
use crate::results::ResultName;
use crate::store::namespaces::{INPUTS, JOBS};
use crate::store::{Key, Store};

/// What a job asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) id: String,
    pub(crate) created: String,
    pub(crate) request: Request,
    /// The submitting client's identity under the deployment's secret (for deduplication; the
    /// address or key itself is never stored).
    pub(crate) tenant: String,
    pub(crate) items: Vec<ItemSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ItemSpec {
    pub(crate) index: usize,
    pub(crate) filename: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ItemStatus {
    Queued,
    Done,
    Failed,
}

/// What a client sees of a failure: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ErrorDetail {
    pub(crate) code: String,
    pub(crate) message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ItemState {
    pub(crate) index: usize,
    pub(crate) filename: Option<String>,
    pub(crate) status: ItemStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) result_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cached: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorDetail>,
    /// Deliveries it took (1 = the first try).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) attempts: Option<u32>,
}

impl ItemState {
    fn queued(spec: &ItemSpec) -> ItemState {
        ItemState {
            index: spec.index,
            filename: spec.filename.clone(),
            status: ItemStatus::Queued,
            result_url: None,
            cached: None,
            error: None,
            attempts: None,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.status != ItemStatus::Queued
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum JobStatus {
    Running,
    Done,
}

/// The JSON view of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobView {
    pub(crate) id: String,
    pub(crate) status: JobStatus,
    pub(crate) done: usize,
    pub(crate) total: usize,
    pub(crate) events_url: String,
    pub(crate) items: Vec<ItemState>,
}

/// What an event stream says.
#[derive(Debug, Clone)]
pub(crate) enum JobEvent {
    Item(ItemState),
    Done(JobView),
}

fn key(s: String) -> Result<Key, ServeError> {
    Key::new(s.clone()).ok_or(ServeError::UnknownJob(s))
}

/// The hour a well-formed job id carries; anything else is an unknown job (and never a key).
fn hour(id: &str) -> Result<Hour, ServeError> {
    hour_of(id).ok_or_else(|| ServeError::UnknownJob(id.to_string()))
}

pub(crate) fn manifest_key(id: &str) -> Result<Key, ServeError> {
    key(format!("{JOBS}/{}/{id}/manifest.json", hour(id)?))
}

fn items_prefix(id: &str) -> Result<Key, ServeError> {
    key(format!("{JOBS}/{}/{id}/items", hour(id)?))
}

fn item_key(id: &str, index: usize) -> Result<Key, ServeError> {
    key(format!("{JOBS}/{}/{id}/items/{index}.json", hour(id)?))
}

pub(crate) fn input_key(id: &str, index: usize) -> Result<Key, ServeError> {
    key(format!("{INPUTS}/{}/{id}/{index}", hour(id)?))
}

/// Manifests kept in memory: a worker reads each job's once, not once per image.
const MANIFEST_CACHE: usize = 1024;

/// How often a stream of a job another instance runs looks at the store.
const STREAM_POLL: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub(crate) struct Jobs {
    store: Arc<Store>,
    queue: Arc<Queue>,
    /// Ids of jobs whose state this process just changed: wakes streams at once.
    updates: broadcast::Sender<String>,
    manifests: Mutex<HashMap<String, Arc<Manifest>>>,
}

impl Jobs {
    pub(crate) fn new(store: Arc<Store>, queue: Arc<Queue>) -> Jobs {
        Jobs {
            store,
            queue,
            updates: broadcast::channel(1024).0,
            manifests: Mutex::new(HashMap::new()),
        }
    }

    /// Stores one uploaded image of job `id` (before the job is committed).
    pub(crate) async fn put_input(
        &self,
        id: &str,
        index: usize,
        bytes: Bytes,
    ) -> Result<(), ServeError> {
        self.store.put(&input_key(id, index)?, bytes).await?;
        Ok(())
    }

    /// Writes the manifest and enqueues one message per image. On failure nothing of the job
    /// remains (its inputs are removed), so no job is left that nobody will ever run.
    pub(crate) async fn commit(&self, manifest: Manifest) -> Result<JobView, ServeError> {
        let id = manifest.id.clone();
        let body = serde_json::to_vec(&manifest).map_err(|e| ServeError::Task(e.to_string()))?;
        let items: Vec<WorkItem> = manifest
            .items
            .iter()
            .map(|i| WorkItem {
                job: id.clone(),
                index: i.index,
            })
            .collect();
        let committed = async {
            self.store
                .put(&manifest_key(&id)?, Bytes::from(body))
                .await?;
            self.queue.send(&items).await?;
            Ok::<_, ServeError>(())
        }
        .await;
        if let Err(e) = committed {
            let _ = self.remove(&manifest).await;
            return Err(e);
        }
        let view = view_of(&manifest, BTreeMap::new());
        self.cache(Arc::new(manifest));
        Ok(view)
    }

    /// Removes the inputs of a job whose upload failed before it was committed.
    pub(crate) async fn abort(&self, id: &str, uploaded: usize) {
        for index in 0..uploaded {
            if let Ok(k) = input_key(id, index) {
                let _ = self.store.delete(&k).await;
            }
        }
    }

    fn cache(&self, m: Arc<Manifest>) {
        let mut c = self.manifests.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= MANIFEST_CACHE {
            c.clear();
        }
        c.insert(m.id.clone(), m);
    }

    fn forget(&self, id: &str) {
        self.manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// A job's manifest, `None` when there is no such job (or it was deleted).
    pub(crate) async fn manifest(&self, id: &str) -> Result<Option<Arc<Manifest>>, ServeError> {
        if let Some(m) = self
            .manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(Some(m.clone()));
        }
        let m = self.read_manifest(id).await?;
        if let Some(m) = &m {
            self.cache(m.clone());
        }
        Ok(m)
    }

    async fn read_manifest(&self, id: &str) -> Result<Option<Arc<Manifest>>, ServeError> {
        let Some(bytes) = self.store.get(&manifest_key(id)?).await? else {
            return Ok(None);
        };
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| ServeError::Task(format!("job {id}: unreadable manifest: {e}")))?;
        Ok(Some(Arc::new(m)))
    }

    /// The uploaded image `index` of job `id`.
    pub(crate) async fn input(&self, id: &str, index: usize) -> Result<Option<Bytes>, ServeError> {
        Ok(self.store.get(&input_key(id, index)?).await?)
    }

    /// The recorded state of one image, if it finished.
    pub(crate) async fn item(
        &self,
        id: &str,
        index: usize,
    ) -> Result<Option<ItemState>, ServeError> {
        let Some(bytes) = self.store.get(&item_key(id, index)?).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Records a finished image (one object, written once per outcome) and wakes its streams.
    pub(crate) async fn record(&self, id: &str, state: &ItemState) -> Result<(), ServeError> {
        let body = serde_json::to_vec(state).map_err(|e| ServeError::Task(e.to_string()))?;
        self.store
            .put(&item_key(id, state.index)?, Bytes::from(body))
            .await?;
        let _ = self.updates.send(id.to_string());
        Ok(())
    }

    /// Records a finished image, then takes it back if the job was deleted meanwhile (see
    /// [`Jobs::take_back_if_deleted`]). False when the job is gone.
    pub(crate) async fn record_unless_deleted(
        &self,
        id: &str,
        state: &ItemState,
        formats: &[crate::pipeline::OutFormat],
    ) -> Result<bool, ServeError> {
        self.record(id, state).await?;
        self.take_back_if_deleted(id, state.index, formats).await
    }

    /// After writing for image `index`: if the job's manifest is gone, removes what was written
    /// for it (its state, its result in each of `formats`, its input). False when the job is
    /// gone. See [`Jobs::delete`] for why this, after every write, leaves nothing behind.
    pub(crate) async fn take_back_if_deleted(
        &self,
        id: &str,
        index: usize,
        formats: &[crate::pipeline::OutFormat],
    ) -> Result<bool, ServeError> {
        if self.stored_manifest(id).await?.is_some() {
            return Ok(true);
        }
        self.delete_item_leftovers(id, index, formats).await?;
        Ok(false)
    }

    /// The job as it stands: manifest plus finished items, both read from the store (never
    /// from this instance's cache, which may remember a job another instance deleted).
    pub(crate) async fn view(&self, id: &str) -> Result<JobView, ServeError> {
        let manifest = self
            .read_manifest(id)
            .await?
            .ok_or_else(|| ServeError::UnknownJob(id.to_string()))?;
        let mut finished = BTreeMap::new();
        for entry in self.store.list(&items_prefix(id)?).await? {
            let Some(bytes) = self.store.get(&entry.key).await? else {
                continue;
            };
            if let Ok(state) = serde_json::from_slice::<ItemState>(&bytes) {
                finished.insert(state.index, state);
            }
        }
        Ok(view_of(&manifest, finished))
    }

    /// Deletes a job: every image's result, state and input, then the manifest, then the images
    /// once more. A worker checks the manifest after each write and takes back what it wrote
    /// once the manifest is gone ([`Jobs::record_unless_deleted`]); what it wrote before, the
    /// second sweep removes, so nothing of the job comes back however the two interleave. A
    /// failure before the manifest goes leaves a job that can be deleted again.
    pub(crate) async fn delete(&self, id: &str) -> Result<(), ServeError> {
        let manifest = self
            .stored_manifest(id)
            .await?
            .ok_or_else(|| ServeError::UnknownJob(id.to_string()))?;
        self.remove(&manifest).await?;
        let _ = self.updates.send(id.to_string());
        Ok(())
    }

    async fn remove(&self, m: &Manifest) -> Result<(), ServeError> {
        self.delete_images(m).await?;
        self.store.delete(&manifest_key(&m.id)?).await?;
        self.forget(&m.id);
        self.delete_images(m).await
    }

    /// Each image's result, recorded state and input.
    async fn delete_images(&self, m: &Manifest) -> Result<(), ServeError> {
        for item in &m.items {
            self.delete_image(&m.id, item.index, &[m.request.format])
                .await?;
        }
        Ok(())
    }

    /// Image `index`'s result in each of `formats`, its recorded state and its input.
    async fn delete_image(
        &self,
        id: &str,
        index: usize,
        formats: &[crate::pipeline::OutFormat],
    ) -> Result<(), ServeError> {
        for &format in formats {
            if let Some(k) = ResultName::of_item(id, index, format).key() {
                self.store.delete(&k).await?;
            }
        }
        self.store.delete(&item_key(id, index)?).await?;
        self.store.delete(&input_key(id, index)?).await?;
        Ok(())
    }

    /// The job's manifest as the store has it now, bypassing this instance's cache (which may
    /// remember a job another instance deleted); `None` once it is deleted.
    pub(crate) async fn stored_manifest(
        &self,
        id: &str,
    ) -> Result<Option<Arc<Manifest>>, ServeError> {
        let m = self.read_manifest(id).await?;
        if m.is_none() {
            self.forget(id);
        }
        Ok(m)
    }

    /// Removes the uploaded image `index` of job `id`, once its translation is recorded.
    pub(crate) async fn delete_input(&self, id: &str, index: usize) -> Result<(), ServeError> {
        Ok(self.store.delete(&input_key(id, index)?).await?)
    }

    /// Removes what a worker wrote for an image of a job deleted while it worked: the result in
    /// each of `formats` (all of them when the manifest that named it is gone), its state and
    /// its input.
    pub(crate) async fn delete_item_leftovers(
        &self,
        id: &str,
        index: usize,
        formats: &[crate::pipeline::OutFormat],
    ) -> Result<(), ServeError> {
        self.delete_image(id, index, formats).await?;
        self.forget(id);
        Ok(())
    }

    /// One `Item` event per finished image (those finished before the stream opened too), then
    /// `Done`, then the stream ends. Woken at once by this instance's updates, and every
    /// half second for jobs other instances run. Ends early if the job disappears (deleted).
    pub(crate) fn events(self: &Arc<Self>, id: String) -> mpsc::Receiver<JobEvent> {
        let (tx, rx) = mpsc::channel(16);
        let jobs = self.clone();
        tokio::spawn(async move {
            let mut updates = jobs.updates.subscribe();
            let mut sent = std::collections::HashSet::new();
            loop {
                let view = match jobs.view(&id).await {
                    Ok(v) => v,
                    Err(ServeError::UnknownJob(_)) => return,
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "event stream could not read the job");
                        tokio::time::sleep(STREAM_POLL).await;
                        continue;
                    }
                };
                for item in view.items.iter().filter(|i| i.is_finished()) {
                    if sent.insert(item.index)
                        && tx.send(JobEvent::Item(item.clone())).await.is_err()
                    {
                        return;
                    }
                }
                if view.status == JobStatus::Done {
                    let _ = tx.send(JobEvent::Done(view)).await;
                    return;
                }
                // Wake on our own updates of this job, or poll for other instances'.
                let wait = async {
                    loop {
                        match updates.recv().await {
                            Ok(j) if j == id => return,
                            Ok(_) => continue,
                            Err(broadcast::error::RecvError::Lagged(_)) => return,
                            Err(broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await
                            }
                        }
                    }
                };
                tokio::select! {
                    () = wait => {}
                    () = tokio::time::sleep(STREAM_POLL) => {}
                    () = tx.closed() => return,
                }
            }
        });
        rx
    }
}

fn view_of(m: &Manifest, mut finished: BTreeMap<usize, ItemState>) -> JobView {
    let items: Vec<ItemState> = m
        .items
        .iter()
        .map(|spec| {
            finished
                .remove(&spec.index)
                .unwrap_or_else(|| ItemState::queued(spec))
        })
        .collect();
    let done = items.iter().filter(|i| i.is_finished()).count();
    JobView {
        id: m.id.clone(),
        status: if done == items.len() {
            JobStatus::Done
        } else {
            JobStatus::Running
        },
        done,
        total: items.len(),
        events_url: format!("/v1/jobs/{}/events", m.id),
        items,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::OutFormat;
    use crate::queue::LocalQueue;
    use crate::store::FsStore;

    fn manifest(id: &str, n: usize) -> Manifest {
        Manifest {
            id: id.to_string(),
            created: "2026-12-02T00:00:00Z".into(),
            request: Request {
                style: "default".into(),
                format: OutFormat::Png,
                size: None,
                crop_face: false,
            },
            tenant: "t".into(),
            items: (0..n)
                .map(|index| ItemSpec {
                    index,
                    filename: Some(format!("{index}.png")),
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn a_job_lives_in_the_store_and_is_deleted_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::new(crate::store::Backend::Fs(
            FsStore::open(dir.path()).expect("store"),
        )));
        let queue = Arc::new(Queue::Local(LocalQueue::new(3)));
        let jobs = Arc::new(Jobs::new(store.clone(), queue.clone()));
        let id = crate::ids::new_id().expect("rng");
        for i in 0..2 {
            jobs.put_input(&id, i, Bytes::from_static(b"img"))
                .await
                .expect("input");
        }
        let view = jobs.commit(manifest(&id, 2)).await.expect("commit");
        assert_eq!(
            (view.status, view.done, view.total),
            (JobStatus::Running, 0, 2)
        );
        assert_eq!(queue.backlog().await, Some(2));
        let mut events = jobs.events(id.clone());
        let done = ItemState {
            status: ItemStatus::Done,
            result_url: Some("/v1/results/x".into()),
            ..ItemState::queued(&manifest(&id, 2).items[1])
        };
        jobs.record(&id, &done).await.expect("record");
        match events.recv().await {
            Some(JobEvent::Item(i)) => assert_eq!(i.index, 1),
            other => panic!("{other:?}"),
        }
        // Another instance (a second Jobs on the same store) sees the same state.
        let other = Jobs::new(store.clone(), queue.clone());
        let v = other.view(&id).await.expect("view");
        assert_eq!((v.done, v.items[1].status), (1, ItemStatus::Done));
        jobs.delete(&id).await.expect("delete");
        assert!(matches!(
            other.view(&id).await,
            Err(ServeError::UnknownJob(_))
        ));
        assert!(
            store
                .list(&Key::new("inputs").expect("key"))
                .await
                .expect("list")
                .is_empty()
        );
        assert!(matches!(
            jobs.view("../../etc").await,
            Err(ServeError::UnknownJob(_))
        ));
    }

    /// A worker writes an image's result and state, then checks the job is still there, while
    /// the job is deleted: nothing is left, whichever of the delete's store operations the write
    /// and the check come before (every pair is tried).
    #[tokio::test]
    async fn a_job_deleted_while_a_worker_writes_leaves_nothing() {
        use futures::FutureExt;
        use std::sync::atomic::{AtomicUsize, Ordering};

        // Runs the delete with the worker's write before the delete's operation number `write`
        // and its check before number `check` (or after the delete); the delete's operation count.
        async fn interleave(write: usize, check: usize) -> usize {
            let dir = tempfile::tempdir().expect("tempdir");
            let fs = || {
                Store::new(crate::store::Backend::Fs(
                    FsStore::open(dir.path()).expect("store"),
                ))
            };
            let queue = Arc::new(Queue::Local(LocalQueue::new(4)));
            let worker = Arc::new(Jobs::new(Arc::new(fs()), queue.clone()));
            let id = crate::ids::new_id().expect("rng");
            let m = manifest(&id, 1);
            worker
                .put_input(&id, 0, Bytes::from_static(b"img"))
                .await
                .expect("input");
            worker.commit(m.clone()).await.expect("commit");
            let step = {
                let (worker, id, done) = (
                    worker.clone(),
                    id.clone(),
                    ItemState {
                        status: ItemStatus::Done,
                        ..ItemState::queued(&m.items[0])
                    },
                );
                move |n: usize| {
                    let (worker, id, done) = (worker.clone(), id.clone(), done.clone());
                    async move {
                        if n == write {
                            let name = ResultName::of_item(&id, 0, OutFormat::Png);
                            crate::results::save(
                                &worker.store,
                                &name,
                                Bytes::from_static(b"out"),
                                None,
                            )
                            .await
                            .expect("save");
                            worker.record(&id, &done).await.expect("record");
                        }
                        if n == check {
                            worker
                                .take_back_if_deleted(&id, 0, &[OutFormat::Png])
                                .await
                                .expect("check");
                        }
                    }
                }
            };
            let ops = Arc::new(AtomicUsize::new(0));
            let before: crate::store::BeforeOp = {
                let (ops, step) = (ops.clone(), step.clone());
                crate::store::BeforeOp(Arc::new(move || {
                    step(ops.fetch_add(1, Ordering::SeqCst)).boxed()
                }))
            };
            let deleter = Jobs::new(Arc::new(fs().with_before_op(before)), queue);
            deleter.delete(&id).await.expect("delete");
            let ops = ops.load(Ordering::SeqCst);
            // What the delete's operations did not come before, runs after it.
            let mut after: Vec<usize> = [write, check].into_iter().filter(|&n| n >= ops).collect();
            after.dedup();
            for n in after {
                step(n).await;
            }
            let store = fs();
            for ns in ["inputs", "jobs", "results"] {
                let left = store.list(&Key::new(ns).expect("key")).await.expect("list");
                assert!(
                    left.is_empty(),
                    "write before op {write}, check before {check}: {left:?}"
                );
            }
            ops
        }

        let ops = interleave(usize::MAX, usize::MAX).await;
        for write in 0..=ops {
            for check in write..=ops {
                interleave(write, check).await;
            }
        }
    }
}
