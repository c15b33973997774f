//! YOLO ONNX exports (user-supplied face or anime-face models), layout recognised from the output.
//!
//! Layouts (batch 1; coordinates in letterboxed input pixels; scores already sigmoid):
//! - `v5face`  [1, N, 16]: cx, cy, w, h, obj, 5 landmarks (x, y), class score (yolov5-face)
//! - `v8`      [1, 4+nc, N]: cx, cy, w, h, nc class scores (ultralytics YOLOv8/YOLO11 detect)
//! - `v8pose`  [1, 20, N]: cx, cy, w, h, score, 5 keypoints (x, y, visibility) (pose-style face)
//! - `e2e`     [1, K, 6]: x1, y1, x2, y2, score, class (exports with NMS inside)
//!
//! A [1, 20, N] output is read as `v8pose` (a 16-class detector has the same shape: force the
//! layout in that case). The image is letterboxed like ultralytics (scale to fit, pad 114, centred)
//! and every box and landmark is mapped back to original pixels.

use std::path::Path;

use image::{Rgb, RgbImage};
use ndarray::{Array4, ArrayViewD, Ix3};
use ort::session::Session;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

use super::{DetectError, Detector, Face, model_error, nms, runtime};
use crate::resize::{Quality, resize_rgb};

/// The output layouts we decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    V5face,
    V8,
    V8pose,
    E2e,
}

impl Layout {
    /// Recognises the layout of a `[1, a, b]` output.
    pub fn from_shape(shape: &[usize]) -> Result<Self, DetectError> {
        let bad = || {
            DetectError::Layout(format!(
                "output shape {shape:?} is none of [1,N,16] [1,4+nc,N] [1,20,N] [1,K,6]"
            ))
        };
        let &[1, a, b] = shape else { return Err(bad()) };
        Ok(if b == 16 && a > 16 {
            Self::V5face
        } else if b == 6 && a > 6 {
            Self::E2e
        } else if a == 20 && b > 20 {
            Self::V8pose
        } else if a > 4 && b > a {
            Self::V8
        } else {
            return Err(bad());
        })
    }
}

/// YOLO knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YoloOptions {
    pub conf_threshold: f32,
    pub iou_threshold: f32,
    /// Square input side when the model's input dims are dynamic.
    pub input_size: u32,
    /// Force a layout instead of recognising it.
    pub layout: Option<Layout>,
    /// `v8`/`e2e`: keep only this class (None: any class, best score per box).
    pub class_id: Option<usize>,
    pub max_detections: usize,
    pub threads: usize,
}

impl Default for YoloOptions {
    fn default() -> Self {
        Self {
            conf_threshold: 0.25,
            iou_threshold: 0.45,
            input_size: 640,
            layout: None,
            class_id: None,
            max_detections: 300,
            threads: 1,
        }
    }
}

/// How an image was letterboxed: input = original * scale + (left, top).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    pub left: u32,
    pub top: u32,
    pub new_w: u32,
    pub new_h: u32,
}

impl Letterbox {
    /// Ultralytics' arithmetic: fit inside side x side, centre, padding split with the odd pixel
    /// going right/bottom.
    pub fn new(w: u32, h: u32, side_w: u32, side_h: u32) -> Self {
        let scale = (side_w as f32 / w as f32).min(side_h as f32 / h as f32);
        let new_w = ((w as f32 * scale).round() as u32).clamp(1, side_w);
        let new_h = ((h as f32 * scale).round() as u32).clamp(1, side_h);
        let dw = (side_w - new_w) as f32 / 2.0;
        let dh = (side_h - new_h) as f32 / 2.0;
        Self {
            scale,
            left: (dw - 0.1).round().max(0.0) as u32,
            top: (dh - 0.1).round().max(0.0) as u32,
            new_w,
            new_h,
        }
    }

    /// Maps a point in input pixels back to original pixels.
    pub fn unmap(&self, x: f32, y: f32) -> [f32; 2] {
        [
            (x - self.left as f32) / self.scale,
            (y - self.top as f32) / self.scale,
        ]
    }
}

/// A loaded YOLO session.
pub struct Yolo {
    session: Session,
    opts: YoloOptions,
    side_w: u32,
    side_h: u32,
}

impl Yolo {
    pub fn load(model: &Path, opts: YoloOptions) -> Result<Self, DetectError> {
        let session = runtime::session(model, opts.threads)?;
        let Some(input) = session.inputs().first() else {
            return Err(model_error(model, "model has no input"));
        };
        if session.outputs().is_empty() {
            return Err(model_error(model, "model has no output"));
        }
        let dims: Vec<i64> = input
            .dtype()
            .tensor_shape()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let fixed = |i: usize| dims.get(i).copied().filter(|d| *d > 0).map(|d| d as u32);
        if dims.len() != 4 || dims.get(1).is_some_and(|c| *c > 0 && *c != 3) {
            return Err(model_error(
                model,
                format!("expected an image input [1,3,H,W], got {dims:?}"),
            ));
        }
        let side_h = fixed(2).unwrap_or(opts.input_size);
        let side_w = fixed(3).unwrap_or(opts.input_size);
        Ok(Self {
            session,
            opts,
            side_w,
            side_h,
        })
    }

    /// The letterboxed network input as NCHW RGB floats in 0..1.
    fn prepare(&self, img: &RgbImage) -> (Array4<f32>, Letterbox) {
        let (w, h) = img.dimensions();
        let lb = Letterbox::new(w, h, self.side_w, self.side_h);
        let resized = resize_rgb(img, lb.new_w, lb.new_h, Quality::Fast);
        let mut input = Array4::<f32>::from_elem(
            (1, 3, self.side_h as usize, self.side_w as usize),
            114.0 / 255.0,
        );
        for (x, y, Rgb(p)) in resized.enumerate_pixels() {
            let (xx, yy) = ((x + lb.left) as usize, (y + lb.top) as usize);
            for c in 0..3 {
                input[[0, c, yy, xx]] = f32::from(p[c]) / 255.0;
            }
        }
        (input, lb)
    }
}

impl Detector for Yolo {
    fn detect(&mut self, img: &RgbImage) -> Result<Vec<Face>, DetectError> {
        let (input, lb) = self.prepare(img);
        let tensor = TensorRef::from_array_view(&input)
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let out = outputs[0]
            .try_extract_array::<f32>()
            .map_err(|e| DetectError::Layout(format!("first output: {e}")))?;
        decode(out, &lb, &self.opts)
    }
}

/// Decodes a raw output into faces in original pixels (public for tests and other runtimes).
pub fn decode(
    out: ArrayViewD<'_, f32>,
    lb: &Letterbox,
    opts: &YoloOptions,
) -> Result<Vec<Face>, DetectError> {
    let layout = match opts.layout {
        Some(l) => l,
        None => Layout::from_shape(out.shape())?,
    };
    let out = out
        .into_dimensionality::<Ix3>()
        .map_err(|e| DetectError::Layout(format!("expected a 3-d output: {e}")))?;
    let out = out.index_axis(ndarray::Axis(0), 0);
    // Rows-major layouts (N x fields) versus channel-major (fields x N).
    let (n, fields) = match layout {
        Layout::V5face | Layout::E2e => (out.shape()[0], out.shape()[1]),
        Layout::V8 | Layout::V8pose => (out.shape()[1], out.shape()[0]),
    };
    let min_fields = match layout {
        Layout::V5face => 16,
        Layout::E2e => 6,
        Layout::V8pose => 20,
        Layout::V8 => 5,
    };
    let fits = match layout {
        Layout::V8 => fields >= min_fields,
        _ => fields == min_fields,
    };
    if !fits {
        return Err(DetectError::Layout(format!(
            "{layout:?} needs {min_fields} fields per box, output has {fields}"
        )));
    }
    let at = |i: usize, f: usize| match layout {
        Layout::V5face | Layout::E2e => out[[i, f]],
        Layout::V8 | Layout::V8pose => out[[f, i]],
    };
    let unmap_box = |x1: f32, y1: f32, x2: f32, y2: f32| {
        let [a, b] = lb.unmap(x1, y1);
        let [c, d] = lb.unmap(x2, y2);
        [a, b, c, d]
    };
    let from_center = |i: usize| {
        let (cx, cy, w, h) = (at(i, 0), at(i, 1), at(i, 2), at(i, 3));
        unmap_box(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
    };
    let mut faces = Vec::new();
    for i in 0..n {
        let (score, bbox, landmarks) = match layout {
            Layout::V5face => {
                let score = at(i, 4) * at(i, 15);
                let lm = (0..5)
                    .map(|k| lb.unmap(at(i, 5 + 2 * k), at(i, 6 + 2 * k)))
                    .collect();
                (score, from_center(i), lm)
            }
            Layout::V8pose => {
                let lm = (0..5)
                    .map(|k| lb.unmap(at(i, 5 + 3 * k), at(i, 6 + 3 * k)))
                    .collect();
                (at(i, 4), from_center(i), lm)
            }
            Layout::V8 => {
                let score = match opts.class_id {
                    Some(c) if 4 + c < fields => at(i, 4 + c),
                    Some(_) => 0.0,
                    None => (4..fields)
                        .map(|f| at(i, f))
                        .fold(f32::NEG_INFINITY, f32::max),
                };
                (score, from_center(i), Vec::new())
            }
            Layout::E2e => {
                if let Some(c) = opts.class_id
                    && at(i, 5).round() as i64 != c as i64
                {
                    continue;
                }
                (
                    at(i, 4),
                    unmap_box(at(i, 0), at(i, 1), at(i, 2), at(i, 3)),
                    Vec::new(),
                )
            }
        };
        let keep = score > opts.conf_threshold && bbox[2] > bbox[0] && bbox[3] > bbox[1];
        if !keep {
            continue;
        }
        faces.push(Face {
            bbox,
            score,
            landmarks,
        });
    }
    Ok(match layout {
        // NMS already ran inside the model: only order and cap.
        Layout::E2e => nms(faces, 1.0, opts.max_detections),
        _ => nms(faces, opts.iou_threshold, opts.max_detections),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_from_shapes() {
        assert_eq!(
            Layout::from_shape(&[1, 25200, 16]).ok(),
            Some(Layout::V5face)
        );
        assert_eq!(Layout::from_shape(&[1, 5, 8400]).ok(), Some(Layout::V8));
        assert_eq!(Layout::from_shape(&[1, 84, 8400]).ok(), Some(Layout::V8));
        assert_eq!(
            Layout::from_shape(&[1, 20, 8400]).ok(),
            Some(Layout::V8pose)
        );
        assert_eq!(Layout::from_shape(&[1, 300, 6]).ok(), Some(Layout::E2e));
        assert!(Layout::from_shape(&[1, 4, 4]).is_err());
        assert!(Layout::from_shape(&[2, 5, 8400]).is_err());
        assert!(Layout::from_shape(&[5, 8400]).is_err());
    }

    #[test]
    fn letterbox_matches_ultralytics_arithmetic() {
        let lb = Letterbox::new(320, 160, 640, 640);
        assert_eq!(
            (lb.scale, lb.left, lb.top, lb.new_w, lb.new_h),
            (2.0, 0, 160, 640, 320)
        );
        assert_eq!(lb.unmap(100.0, 260.0), [50.0, 50.0]);
        // Odd padding: 640 - 639 = 1 px, which goes to the right.
        let lb = Letterbox::new(639, 100, 640, 640);
        assert_eq!(lb.left, 0);
    }
}
