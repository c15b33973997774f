//! The queue of job items: one message per image, consumed by every instance's worker loop (and by
//! `brs-serve worker`, and the Lambda variant). Two implementations with one contract: [`local`]
//! (in process; the default, a single box) and, with the `aws` feature, [`sqs`], whose visibility
//! timeout hands a dead worker's message to another and whose redrive policy moves a message that
//! keeps failing to a dead-letter queue. Everything above this module talks to [`Queue`] only.

mod local;
#[cfg(feature = "aws")]
mod sqs;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use local::LocalQueue;
#[cfg(feature = "aws")]
pub use sqs::{SqsQueue, SqsSettings};

/// One image of one job: the body of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkItem {
    pub job: String,
    pub index: usize,
}

/// A received message, to be deleted once its work is recorded, or released for another try.
#[derive(Debug)]
pub struct Delivery {
    pub item: WorkItem,
    /// How often this message has been received, this time included (1 the first time).
    pub receive_count: u32,
    pub receipt: Receipt,
}

/// What identifies one delivery of a message to the queue.
#[derive(Debug, Clone)]
pub enum Receipt {
    Local,
    #[cfg(feature = "aws")]
    Sqs(String),
}

/// Why a queue operation failed; always worth a retry later.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {op}: {message}")]
    Remote { op: &'static str, message: String },
    #[error("queue message {0:?} is not a brs work item")]
    Malformed(String),
}

/// Where job items wait.
#[derive(Debug)]
pub enum Queue {
    Local(LocalQueue),
    #[cfg(feature = "aws")]
    Sqs(SqsQueue),
}

impl Queue {
    /// Enqueues every item (in batches where the queue takes them).
    pub async fn send(&self, items: &[WorkItem]) -> Result<(), QueueError> {
        match self {
            Queue::Local(q) => {
                q.send(items);
                Ok(())
            }
            #[cfg(feature = "aws")]
            Queue::Sqs(q) => q.send(items).await,
        }
    }

    /// Up to `max` messages, waiting up to `wait` for the first (long polling).
    pub async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        match self {
            Queue::Local(q) => Ok(q.receive(max, wait).await),
            #[cfg(feature = "aws")]
            Queue::Sqs(q) => q.receive(max, wait).await,
        }
    }

    /// How long a received message stays invisible to other consumers (`None`: the queue has
    /// no other consumers).
    pub fn visibility(&self) -> Option<Duration> {
        match self {
            Queue::Local(_) => None,
            #[cfg(feature = "aws")]
            Queue::Sqs(q) => Some(q.settings().visibility_timeout),
        }
    }

    /// Keeps a delivery invisible to other consumers for another `for_` (the work is taking long).
    pub async fn extend(&self, receipt: &Receipt, for_: Duration) -> Result<(), QueueError> {
        #[cfg(not(feature = "aws"))]
        let _ = for_; // only SQS deliveries have a visibility to extend
        match (receipt, self) {
            (Receipt::Local, _) => Ok(()),
            #[cfg(feature = "aws")]
            (Receipt::Sqs(r), Queue::Sqs(q)) => q.set_visibility(r, for_).await,
            #[cfg(feature = "aws")]
            (Receipt::Sqs(_), Queue::Local(_)) => Ok(()),
        }
    }

    /// The work of `d` is recorded: the message goes away.
    pub async fn delete(&self, d: Delivery) -> Result<(), QueueError> {
        match (d.receipt, self) {
            (Receipt::Local, _) => Ok(()),
            #[cfg(feature = "aws")]
            (Receipt::Sqs(r), Queue::Sqs(q)) => q.delete(&r).await,
            #[cfg(feature = "aws")]
            (Receipt::Sqs(_), Queue::Local(_)) => Ok(()),
        }
    }

    /// The work of `d` failed for now (or this worker is stopping): make it visible again after
    /// `after`, for this or another worker.
    pub async fn release(&self, d: Delivery, after: Duration) -> Result<(), QueueError> {
        match (d.receipt, self) {
            (Receipt::Local, Queue::Local(q)) => {
                q.release(d.item, d.receive_count, after);
                Ok(())
            }
            #[cfg(feature = "aws")]
            (Receipt::Sqs(r), Queue::Sqs(q)) => q.set_visibility(&r, after).await,
            #[cfg(feature = "aws")]
            _ => Ok(()),
        }
    }

    /// Deliveries after which a failing message is dead-lettered.
    pub fn max_receives(&self) -> u32 {
        match self {
            Queue::Local(q) => q.max_receives(),
            #[cfg(feature = "aws")]
            Queue::Sqs(q) => q.max_receives(),
        }
    }

    /// Messages waiting (approximate for SQS), for drain decisions and metrics.
    pub async fn backlog(&self) -> Option<u64> {
        match self {
            Queue::Local(q) => Some(q.len() as u64),
            #[cfg(feature = "aws")]
            Queue::Sqs(q) => q.backlog().await,
        }
    }

    /// True when the queue lives in this process: its items die with it, so a drain must wait
    /// for them, and nothing outside this process will take them.
    pub fn is_local(&self) -> bool {
        matches!(self, Queue::Local(_))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Queue::Local(_) => "local",
            #[cfg(feature = "aws")]
            Queue::Sqs(_) => "sqs",
        }
    }
}
