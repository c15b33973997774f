//! brs-dataset: turns folders of photos into face-crop training sets (and synthetic domains).
//!
//! `decode` is the bounded image decoder shared with the server; `detect` runs ONNX face detectors
//! through ONNX Runtime; `crop` frames a face; `filters` judges crops; `run` drives a whole folder
//! (parallel, resumable, with a manifest); `split` and `preview` prepare and inspect; `synth`
//! generates two procedural domains with a known mapping between them; `cartoon` is the demo's drawn
//! style, `mapping` the known photo renderings, `photoset` an unpaired set made of a few photos and
//! one of them. See docs/dataset.md.

pub mod cartoon;
pub mod crop;
pub mod decode;
pub mod detect;
pub mod filters;
pub mod fsutil;
pub mod mapping;
pub mod photoset;
pub mod preview;
pub mod resize;
pub mod run;
pub mod split;
pub mod synth;
