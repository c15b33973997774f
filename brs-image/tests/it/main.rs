//! Integration tests of the shared image path, compiled as one binary: bad and unusual inputs,
//! metadata bombs under a heap counter, real photos through CenterFace, YOLO output layouts, and a
//! property test over decode + crop.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod bad_inputs;
mod memory;
mod metadata_bombs;
mod props;
mod real_photos;
mod yolo_layouts;
