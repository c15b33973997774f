//! What a training run reports as it goes, as typed events: the library never prints, the caller
//! renders them (brs-train's binary draws a progress bar and prints lines; tests may ignore them).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::losses::Losses;

/// What a user should know before training starts: the data read and where the run starts from.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A dataset folder was read: its usable images, and the files skipped with the reason.
    Domain {
        folder: String,
        dir: PathBuf,
        images: usize,
        skipped: Vec<(PathBuf, String)>,
    },
    /// `--resume` found no checkpoint in the run directory: training starts from scratch.
    NoCheckpoint { out: PathBuf },
    /// The checkpoint holds no optimizer state (an imported one): Adam starts afresh.
    NoOptimizerState { checkpoint: PathBuf },
    /// Training continues from a checkpoint.
    Resumed { checkpoint: PathBuf, iteration: u64 },
}

/// How many skipped files a `Domain` notice names before it says "...".
const NAMED_SKIPS: usize = 5;

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Domain {
                folder,
                dir,
                images,
                skipped,
            } => {
                write!(f, "{folder}: {images} images from {}", dir.display())?;
                if !skipped.is_empty() {
                    write!(f, "; skipped {} unreadable:", skipped.len())?;
                    for (path, reason) in skipped.iter().take(NAMED_SKIPS) {
                        let name = path
                            .file_name()
                            .map(|n| n.to_string_lossy())
                            .unwrap_or_default();
                        write!(f, " {name} ({reason});")?;
                    }
                    if skipped.len() > NAMED_SKIPS {
                        write!(f, " ...")?;
                    }
                }
                Ok(())
            }
            Notice::NoCheckpoint { out } => {
                write!(f, "no checkpoint in {}: starting afresh", out.display())
            }
            Notice::NoOptimizerState { checkpoint } => write!(
                f,
                "{} has no optimizer state (an imported checkpoint?): Adam starts afresh",
                checkpoint.display()
            ),
            Notice::Resumed {
                checkpoint,
                iteration,
            } => write!(
                f,
                "resumed from {} at iteration {iteration}",
                checkpoint.display()
            ),
        }
    }
}

/// One thing that happened in a run, in the order they happen: the notices, `Started`, then per
/// iteration `Iteration`, with `Samples` and `Checkpoint` when those are written.
#[derive(Debug)]
pub enum TrainEvent<'a> {
    Notice(&'a Notice),
    /// The loop starts at `iteration` (more than 0 after a resume) of `total`.
    Started {
        iteration: u64,
        total: u64,
    },
    /// Iteration `iteration` of `total` finished with these losses.
    Iteration {
        iteration: u64,
        total: u64,
        losses: &'a Losses,
    },
    /// Sample grids (A2B, B2A) and the loss plot were written (every `print_freq` iterations).
    Samples {
        iteration: u64,
        total: u64,
        losses: &'a Losses,
        grids: &'a [PathBuf; 2],
    },
    /// A checkpoint was written.
    Checkpoint {
        iteration: u64,
        dir: &'a Path,
    },
    /// Half of `--max-minutes` is gone at `iteration`: the learning rate now falls linearly to 0
    /// at `total`, the run's new end (the paper's decay over the second half of a run).
    DecayFitted {
        iteration: u64,
        total: u64,
    },
}

/// Receives a run's events.
pub trait Observer {
    fn event(&mut self, event: &TrainEvent<'_>);
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {
    fn event(&mut self, _: &TrainEvent<'_>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_read_as_they_always_did() {
        let skipped: Vec<(PathBuf, String)> = (0..7)
            .map(|i| (PathBuf::from(format!("/d/bad{i}.jpg")), "corrupt".into()))
            .collect();
        let domain = Notice::Domain {
            folder: "trainA".into(),
            dir: "/d".into(),
            images: 4,
            skipped,
        };
        let text = domain.to_string();
        assert!(
            text.starts_with("trainA: 4 images from /d; skipped 7 unreadable: bad0.jpg (corrupt);")
        );
        assert!(text.contains("bad4.jpg") && !text.contains("bad5.jpg") && text.ends_with(" ..."));
        let resumed = Notice::Resumed {
            checkpoint: "/r/ckpt-0000010".into(),
            iteration: 10,
        };
        assert_eq!(
            resumed.to_string(),
            "resumed from /r/ckpt-0000010 at iteration 10"
        );
    }
}
