//! Integration tests, compiled as one binary: real photos, YOLO layouts, bad inputs, the CLI,
//! synthetic domains and a property test over decode + crop.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod bad_inputs;
mod cli;
mod helpers;
mod props;
mod real_photos;
mod yolo_layouts;
