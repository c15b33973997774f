//! Admission before work. Every image takes a slot in its style's queue before its upload is read
//! (an interactive request that finds none gets 503 at once; a job image waits for one), holds it
//! through decoding and inference, and gives it back when its translation is done; job images
//! can hold at most `job_queue_share` of the slots, so interactive requests always find room.
//! Decoding runs under a global limit of about one image per core. Together these bound what
//! the server holds in memory by configuration, whatever clients send. A slot carries its owner,
//! so the decode permits and the batcher serve clients in turns (`fair`).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ServeError;
use crate::fair::Owner;

/// The slots of one style's queue.
#[derive(Debug)]
pub(crate) struct Slots {
    depth: usize,
    all: Arc<Semaphore>,
    jobs: Arc<Semaphore>,
}

/// One image's place in the queue, released when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    owner: Owner,
    _slot: OwnedSemaphorePermit,
    _job: Option<OwnedSemaphorePermit>,
}

impl Slot {
    /// Whose image holds this slot.
    pub(crate) fn owner(&self) -> &Owner {
        &self.owner
    }
}

impl Slots {
    pub(crate) fn new(depth: usize, job_slots: usize) -> Slots {
        Slots {
            depth,
            all: Arc::new(Semaphore::new(depth)),
            jobs: Arc::new(Semaphore::new(job_slots.clamp(1, depth.max(1)))),
        }
    }

    /// A slot for an interactive request, now or never.
    pub(crate) fn try_interactive(&self, owner: Owner) -> Result<Slot, ServeError> {
        let slot = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServeError::QueueFull)?;
        Ok(Slot {
            owner,
            _slot: slot,
            _job: None,
        })
    }

    /// A slot for a job image: waits for the job share, then for a slot.
    pub(crate) async fn job(&self, owner: Owner) -> Result<Slot, ServeError> {
        let job = self
            .jobs
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServeError::Draining)?;
        let slot = self
            .all
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServeError::Draining)?;
        Ok(Slot {
            owner,
            _slot: slot,
            _job: Some(job),
        })
    }

    /// Images holding a slot now.
    pub(crate) fn held(&self) -> usize {
        self.depth.saturating_sub(self.all.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_never_take_the_whole_queue() {
        let slots = Slots::new(4, 2);
        let me = || Owner::from("me");
        let j1 = slots.job(me()).await.expect("job slot");
        let j2 = slots.job(me()).await.expect("job slot");
        // A third job image waits although two slots are free: they are interactive room.
        let third =
            tokio::time::timeout(std::time::Duration::from_millis(50), slots.job(me())).await;
        assert!(third.is_err(), "the job share is 2 of 4");
        let i1 = slots.try_interactive(me()).expect("room for interactive");
        let i2 = slots.try_interactive(me()).expect("room for interactive");
        assert!(matches!(
            slots.try_interactive(me()),
            Err(ServeError::QueueFull)
        ));
        assert_eq!(slots.held(), 4);
        drop((i1, j1));
        let j3 = tokio::time::timeout(std::time::Duration::from_secs(1), slots.job(me()))
            .await
            .expect("a job slot came free")
            .expect("slot");
        assert_eq!(slots.held(), 3);
        drop((i2, j2, j3));
        assert_eq!(slots.held(), 0);
    }
}
