//! brs-train: trains U-GAT-IT (Kim et al., ICLR 2020, <https://arxiv.org/abs/1907.10830>) exactly
//! as the official PyTorch code does, but resumable (Adam moments and the data stream are
//! checkpointed), observable (progress bar, metrics, sample grids, loss plot) and faster (no
//! duplicated generator passes, batched generator calls, no unneeded gradients).
//!
//! `config` holds the options, `data` the folders and augmentation, `losses` and `optim` the
//! maths, `step` the networks and one iteration, `trainer` the run and its loop, `checkpoint`
//! what resume needs, `metrics` the run's log, `samples` and `plot` the pictures (`font` their
//! labels, `png` their files), `events` what a run reports (the library never prints: the
//! binary's `cli` renders the events), `translate` offline inference, `evaluate` scores it against known answers.

mod checkpoint;
pub mod config;
mod data;
pub mod error;
pub mod evaluate;
pub mod events;
mod font;
pub mod losses;
mod metrics;
mod optim;
mod plot;
mod png;
mod replica;
mod samples;
mod step;
pub mod trainer;
pub mod translate;

pub use config::TrainConfig;
pub use error::{Result, TrainError};
pub use events::{Notice, Observer, Quiet, TrainEvent};
pub use losses::Losses;
pub use trainer::{EarlyStop, RunSummary, TrainOptions, Trainer, train};
