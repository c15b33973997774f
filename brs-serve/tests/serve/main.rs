//! HTTP tests of brs-serve over real loopback sockets, compiled as one binary.

#[path = "../common/mod.rs"]
mod common;

mod abuse;
mod api;
mod browser;
mod cli;
mod engine;
mod fairness;
mod harness;
mod jobs;
mod lifecycle;
mod memory;
mod reload;
mod shutdown;
mod sqs;
mod store;
mod worker_ops;
