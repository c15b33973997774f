//! `crop=face`: the best face brs-dataset's detector finds, as a square with a margin, because
//! the generator was trained on face crops and a whole photo comes out as mush.

use brs_dataset::detect::{DetectorPool, Face};
use image::RgbImage;
use image::imageops;

use crate::error::ApiError;

/// Square box around `face` grown by `margin` x its larger side, clamped to the image.
pub(crate) fn face_square(face: &Face, margin: f32, w: u32, h: u32) -> (u32, u32, u32) {
    let [x1, y1, x2, y2] = face.bbox;
    let side = (x2 - x1).max(y2 - y1).max(1.0) * (1.0 + margin);
    let side = side.min(w.min(h) as f32).max(1.0);
    let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    let left = (cx - side / 2.0).clamp(0.0, w as f32 - side);
    let top = (cy - side / 2.0).clamp(0.0, h as f32 - side);
    (left as u32, top as u32, side as u32)
}

pub(crate) fn crop_face(
    pool: &DetectorPool,
    img: &RgbImage,
    margin: f32,
) -> Result<RgbImage, ApiError> {
    let faces = pool
        .with(|d| d.detect(img))
        .map_err(|e| ApiError::Internal(format!("face detector: {e}")))?
        .map_err(|e| ApiError::Internal(format!("face detector: {e}")))?;
    let best = faces.first().ok_or_else(|| ApiError::Unprocessable {
        code: "no_face",
        message: "crop=face: no face found in the image".into(),
    })?;
    let (x, y, s) = face_square(best, margin, img.width(), img.height());
    Ok(imageops::crop_imm(img, x, y, s, s).to_image())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_stays_inside_the_image() {
        let f = Face {
            bbox: [90.0, 10.0, 110.0, 40.0],
            score: 0.9,
            landmarks: vec![],
        };
        let (x, y, s) = face_square(&f, 0.5, 120, 100);
        assert_eq!(s, 45);
        assert!(x + s <= 120 && y + s <= 100, "{x} {y} {s}");
        let (_, _, s) = face_square(&f, 4.0, 120, 100);
        assert_eq!(s, 100, "clamped to the smaller side");
    }
}
