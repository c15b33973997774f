//! The queue's consumer: every brs-serve instance runs one, `brs-serve worker` runs only this, and
//! the Lambda variant calls [`process`] for each message of an SQS batch.
//!
//! An image is taken only when a job slot of the queue is free, so job images are decoded one at
//! a time as they reach the batcher, never all at once. Each message ends one of three ways:
//! recorded (done, or failed for good: a corrupt image never gets better) and deleted; released
//! for another try after a growing delay (the store was down, the model was loading); or, on its
//! last allowed delivery, recorded as failed with the reason and left to the queue's redrive
//! policy, which moves it to the dead-letter queue. A worker that dies mid-image loses nothing:
//! its message reappears when its visibility timeout runs out and another worker finishes it.
//! Recording is idempotent (one object per image, at a name fixed by the job and index), and an
//! image already recorded is not translated again, so a repeated delivery neither pays twice nor
//! shows two results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::batcher::Lane;
use crate::error::ServeError;
use crate::jobs::{ErrorDetail, ItemState, ItemStatus};
use crate::pipeline::{self, OutFormat, Params};
use crate::queue::{Delivery, WorkItem};
use crate::results::{self, DedupParts, ResultName};
use crate::state::AppState;

/// How a message ended, for the metrics and the Lambda's batch report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Translated and recorded (or found recorded already): delete the message.
    Done,
    /// Recorded as failed for good: delete the message.
    Failed,
    /// Not recorded; try again later.
    Retry,
    /// Recorded as failed on its last delivery; the redrive policy dead-letters the message.
    GaveUp,
}

/// Longest a worker waits before polling again after the queue itself failed.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(30);

/// How long a released message stays invisible before its next try: 2, 4, 8... up to 60 s.
fn retry_delay(receive_count: u32) -> Duration {
    Duration::from_secs(1 << receive_count.clamp(1, 6)).min(Duration::from_secs(60))
}

/// Runs the consumer until the drain says stop: at once for a shared queue (other workers take
/// over), only once it is empty for the in-process one (its items die with us).
pub(crate) async fn run(state: AppState) {
    let concurrency = state.config.job_slots() * state.registry.styles().count().max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let batch = match &*state.queue {
        #[cfg(feature = "aws")]
        crate::queue::Queue::Sqs(q) => q.settings().batch_size as usize,
        crate::queue::Queue::Local(_) => concurrency,
    };
    let wait = state.config.queue.wait_time;
    let mut backoff = Duration::from_millis(500);
    loop {
        if stop(&state).await {
            break;
        }
        let Ok(first) = permits.clone().acquire_owned().await else {
            break;
        };
        let mut held = vec![first];
        while held.len() < batch {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let asked = Instant::now();
        let received = tokio::select! {
            r = state.queue.receive(held.len(), wait) => r,
            () = state.drain.started(), if !state.queue.is_local() => break,
        };
        state.metrics.queue_op("receive", asked.elapsed());
        let deliveries = match received {
            Ok(d) => {
                backoff = Duration::from_millis(500);
                d
            }
            Err(e) => {
                state.metrics.queue_error("receive");
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot receive from the job queue");
                drop(held);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_POLL_BACKOFF);
                continue;
            }
        };
        for d in deliveries {
            let Some(permit) = held.pop() else { break };
            let state = state.clone();
            tokio::spawn(async move {
                let _permit = permit;
                handle(&state, d).await;
            });
        }
    }
    // In-flight images hold permits; the drain waits for them through their guards.
    tracing::info!("job worker stopped");
}

/// True when this consumer should take no more messages.
async fn stop(state: &AppState) -> bool {
    if !state.drain.is_draining() {
        return false;
    }
    if !state.queue.is_local() {
        return true;
    }
    state.queue.backlog().await.unwrap_or(0) == 0 && state.drain.pending_jobs() == 0
}

/// Processes one delivery and settles its message.
pub(crate) async fn handle(state: &AppState, d: Delivery) -> Outcome {
    let received = Instant::now();
    let _guard = state.drain.job_image();
    let heartbeat = keep_invisible(state, &d);
    let outcome = process(state, &d.item, d.receive_count).await;
    if let Some(h) = heartbeat {
        h.abort();
    }
    let delay = retry_delay(d.receive_count);
    let settling = Instant::now();
    let (op, settled) = match outcome {
        Outcome::Done | Outcome::Failed => ("delete", state.queue.delete(d).await),
        Outcome::Retry => ("release", state.queue.release(d, delay).await),
        // Visible again at once: the next receive finds it over the limit and the redrive
        // policy moves it to the dead-letter queue (the in-process queue just drops it).
        Outcome::GaveUp if state.queue.is_local() => ("delete", state.queue.delete(d).await),
        Outcome::GaveUp => ("release", state.queue.release(d, Duration::ZERO).await),
    };
    state.metrics.queue_op(op, settling.elapsed());
    state.metrics.job_image("total", received.elapsed());
    if let Err(e) = settled {
        state.metrics.queue_error("settle");
        tracing::warn!(error = %e, ?outcome, "could not settle a job message; it will be delivered again");
    }
    if state.queue.is_local() && outcome != Outcome::Retry {
        state.drain.dequeued();
    }
    outcome
}

/// Extends the message's visibility while the image takes long (shared queues only).
fn keep_invisible(state: &AppState, d: &Delivery) -> Option<tokio::task::JoinHandle<()>> {
    let vis = state.queue.visibility()?;
    let (state, receipt) = (state.clone(), d.receipt.clone());
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(vis / 2).await;
            let asked = Instant::now();
            let extended = state.queue.extend(&receipt, vis).await;
            state.metrics.queue_op("extend", asked.elapsed());
            if let Err(e) = extended {
                state.metrics.queue_error("extend");
                tracing::warn!(error = %e, "could not extend a job message's visibility");
            }
        }
    }))
}

/// Translates one job image and records the outcome (the Lambda adapter calls this per message
/// and reports `Retry` and `GaveUp` as batch item failures).
pub(crate) async fn process(state: &AppState, item: &WorkItem, receive_count: u32) -> Outcome {
    match translate_item(state, item, receive_count).await {
        Ok(outcome) => {
            state.metrics.job_item(match outcome {
                Outcome::Done => "done",
                _ => "skipped",
            });
            outcome
        }
        Err(e) if !e.is_transient() => {
            state.metrics.job_item("failed");
            record_failure(
                state,
                item,
                receive_count,
                e.code(),
                e.public_message(),
                Outcome::Failed,
            )
            .await
        }
        Err(e) if receive_count >= state.queue.max_receives() => {
            state.metrics.job_item("gave_up");
            tracing::warn!(job = %item.job, index = item.index, attempts = receive_count, error = %e,
                "giving up on a job image");
            let message = format!(
                "gave up after {receive_count} attempts; the last said: {}",
                e.public_message()
            );
            record_failure(
                state,
                item,
                receive_count,
                e.code(),
                message,
                Outcome::GaveUp,
            )
            .await
        }
        Err(e) => {
            state.metrics.job_item("retried");
            tracing::info!(job = %item.job, index = item.index, attempt = receive_count, error = %e,
                "job image will be retried");
            Outcome::Retry
        }
    }
}

async fn record_failure(
    state: &AppState,
    item: &WorkItem,
    attempts: u32,
    code: &str,
    message: String,
    outcome: Outcome,
) -> Outcome {
    let filename = match state.jobs.manifest(&item.job).await {
        Ok(Some(m)) => m.items.get(item.index).and_then(|i| i.filename.clone()),
        _ => None,
    };
    let failed = ItemState {
        index: item.index,
        filename,
        status: ItemStatus::Failed,
        result_url: None,
        cached: None,
        error: Some(ErrorDetail {
            code: code.to_string(),
            message,
        }),
        attempts: Some(attempts),
    };
    // A deleted job's failure is taken back like its results (a result an earlier delivery
    // wrote too, whichever format it had).
    match state
        .jobs
        .record_unless_deleted(&item.job, &failed, &OutFormat::ALL)
        .await
    {
        Ok(true) => outcome,
        Ok(false) => Outcome::Done,
        Err(e) => {
            tracing::warn!(job = %item.job, error = %e, "could not record a failed job image; retrying");
            Outcome::Retry
        }
    }
}

async fn translate_item(
    state: &AppState,
    item: &WorkItem,
    receive_count: u32,
) -> Result<Outcome, ServeError> {
    // From the store, never this process's cache: a job deleted through another instance must
    // not be written again.
    let Some(manifest) = state.jobs.stored_manifest(&item.job).await? else {
        // Deleted (or expired) while its messages waited. An earlier delivery may have written
        // this image after the delete and failed to take it back: take it back now.
        state
            .jobs
            .delete_item_leftovers(&item.job, item.index, &OutFormat::ALL)
            .await?;
        return Ok(Outcome::Done);
    };
    let Some(spec) = manifest.items.iter().find(|i| i.index == item.index) else {
        return Err(ServeError::UnknownJob(format!(
            "{} item {}",
            item.job, item.index
        )));
    };
    if state
        .jobs
        .item(&item.job, item.index)
        .await?
        .is_some_and(|s| s.is_finished())
    {
        return Ok(Outcome::Done);
    }
    let params = Params::resolve(state, &manifest.request)?;
    let input = state
        .jobs
        .input(&item.job, item.index)
        .await?
        .ok_or_else(|| ServeError::InputMissing(format!("{}/{}", item.job, item.index)))?;
    let name = ResultName::of_item(&item.job, item.index, params.format);
    let model = params.style.batcher.model();
    let mac = DedupParts {
        tenant: &manifest.tenant,
        input_sha256: results::input_sha256(input.clone()).await,
        version: &model.version,
        precision: &model.precision,
        params: &params,
        crop: &state.config.crop,
    }
    .mac(&state.secret);
    let cached = match results::lookup(&state.store, &mac).await? {
        Some(bytes) => {
            results::save(&state.store, &name, bytes, None).await?;
            true
        }
        None => {
            let translating = Instant::now();
            let slot = params
                .style
                .slots
                .job(manifest.tenant.as_str().into())
                .await?;
            let out = pipeline::translate(state, input, &params, Lane::Job, slot).await;
            state.metrics.job_image("translate", translating.elapsed());
            let out = out?;
            results::save(&state.store, &name, out.bytes, Some(&mac)).await?;
            false
        }
    };
    state.metrics.cache(cached);
    let done = ItemState {
        index: item.index,
        filename: spec.filename.clone(),
        status: ItemStatus::Done,
        result_url: Some(name.url()),
        cached: Some(cached),
        error: None,
        attempts: Some(receive_count),
    };
    // Deleted while we worked: what we wrote is taken back. A failure retries the message,
    // whose next delivery finds the job gone and deletes again.
    if !state
        .jobs
        .record_unless_deleted(&item.job, &done, &[params.format])
        .await?
    {
        return Ok(Outcome::Done);
    }
    // Nobody reads a done image's input again; the bucket's lifecycle removes it if this fails.
    if let Err(e) = state.jobs.delete_input(&item.job, item.index).await {
        tracing::warn!(job = %item.job, index = item.index, error = %e, "could not delete a done image's input");
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_are_capped() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(3), Duration::from_secs(8));
        assert_eq!(retry_delay(30), Duration::from_secs(60));
    }
}
