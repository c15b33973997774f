//! Peak heap use of one piece of work, for the tests that bound what a hostile image may cost.
//!
//! The other tests of this binary run on other threads at the same time, so a process-wide counter
//! would measure them too. Every allocation is instead charged to the allocation group active on
//! the thread that made it (and a free to the group that allocated it, whichever thread frees it):
//! [`peak_of`] opens a group for its closure and reports the group's high-water mark, which is
//! exact and independent of whatever else runs. Work the closure hands to threads of its own is
//! not charged; the decoders measured here run on the calling thread.

use std::alloc::System;
use std::sync::Once;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use tracking_allocator::{
    AllocationGroupId, AllocationGroupToken, AllocationRegistry, AllocationTracker, Allocator,
};

#[global_allocator]
static GLOBAL: Allocator<System> = Allocator::system();

/// Group ids are handed out once each for the life of the process; the measuring tests of this
/// binary use a few dozen.
const GROUPS: usize = 1024;

static CURRENT: [AtomicIsize; GROUPS] = [const { AtomicIsize::new(0) }; GROUPS];
static PEAK: [AtomicUsize; GROUPS] = [const { AtomicUsize::new(0) }; GROUPS];

struct Tracker;

impl AllocationTracker for Tracker {
    fn allocated(&self, _addr: usize, size: usize, _wrapped: usize, group: AllocationGroupId) {
        let id = group.as_usize().get();
        if id < GROUPS {
            let now = CURRENT[id].fetch_add(size as isize, Ordering::Relaxed) + size as isize;
            PEAK[id].fetch_max(usize::try_from(now).unwrap_or(0), Ordering::Relaxed);
        }
    }

    fn deallocated(
        &self,
        _addr: usize,
        size: usize,
        _wrapped: usize,
        source: AllocationGroupId,
        _current: AllocationGroupId,
    ) {
        let id = source.as_usize().get();
        if id < GROUPS {
            CURRENT[id].fetch_sub(size as isize, Ordering::Relaxed);
        }
    }
}

/// Runs `f` and returns its result with the most heap it held at once, in bytes (what it
/// allocated and had not yet freed, the result included).
pub(crate) fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        AllocationRegistry::set_global_tracker(Tracker).expect("the only tracker");
        AllocationRegistry::enable_tracking();
    });
    let mut token = AllocationGroupToken::register().expect("a fresh allocation group");
    let id = token.id().as_usize().get();
    assert!(id < GROUPS, "more allocation groups than the tracker keeps");
    let guard = token.enter();
    let out = f();
    drop(guard);
    (out, PEAK[id].load(Ordering::Relaxed))
}

pub(crate) const MIB: usize = 1 << 20;

#[test]
fn peak_counts_what_is_held_at_once() {
    let ((), peak) = peak_of(|| {
        let a = vec![1u8; 3 * MIB];
        let b = vec![2u8; 2 * MIB];
        drop((a, b));
        let c = vec![3u8; 4 * MIB];
        drop(c);
    });
    assert!((5 * MIB..5 * MIB + 4096).contains(&peak), "{peak}");
}
