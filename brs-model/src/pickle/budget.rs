//! The allocation budget: what a file may make this reader hold, in proportion to its size.

use super::{PickleError, Result};

/// Rough bytes the machine holds per op run (a stack slot), per container and per memo entry.
pub(super) const OP_COST: usize = 32;
pub(super) const OBJ_COST: usize = 96;
pub(super) const MEMO_COST: usize = 48;

/// Caps what a file can make us allocate: a small file must not be able to claim gigabytes
/// through a huge shape over a stride-0 storage or a zip bomb. Legitimate checkpoints stay far
/// below the cap (views can repeat bytes, hence the factor).
#[derive(Debug)]
pub(super) struct Budget {
    left: usize,
}

impl Budget {
    pub(super) fn for_input(len: usize) -> Budget {
        Budget {
            left: len.saturating_mul(4).max(64 << 20),
        }
    }

    /// Bytes still allowed.
    pub(super) fn left(&self) -> usize {
        self.left
    }

    pub(super) fn take(&mut self, n: usize, what: &str) -> Result<()> {
        if n > self.left {
            return Err(PickleError::TooLarge(format!(
                "{what} needs {n} bytes, more than this file's size allows ({} left)",
                self.left
            )));
        }
        self.left -= n;
        Ok(())
    }
}
