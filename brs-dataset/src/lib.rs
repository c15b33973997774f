//! brs-dataset: turns folders of photos into face-crop training sets (and synthetic domains).
//!
//! The image path itself (bounded decoding, detectors, framing) is brs-image's, shared with the
//! server; this crate drives it over folders: `filters` judges crops; `run` drives a whole folder
//! (parallel, resumable, with a manifest, every skipped input counted with its reason); `split`
//! and `preview` prepare and inspect; `synth` generates two procedural domains with a known
//! mapping between them; `cartoon` is the demo's drawn style, `mapping` the known photo
//! renderings, `photoset` an unpaired set made of a few photos and one of them. See
//! docs/dataset.md.

pub mod cartoon;
pub mod filters;
pub mod mapping;
pub mod photoset;
pub mod preview;
pub mod run;
pub mod split;
pub mod synth;
