//! Integration tests of the dataset tool, compiled as one binary: the CLI, synthetic domains, and a
//! crop run over bad inputs.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod bad_inputs;
mod cli;
mod helpers;
