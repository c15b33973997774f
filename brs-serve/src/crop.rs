//! `crop=face`: the largest face brs-dataset's detector finds, framed exactly as brs-dataset frames
//! training crops (its `CropConfig`: more room above the face than below, reflect padding), because
//! the generator learned from such crops and a whole photo comes out as mush.

use brs_image::crop::CropConfig;
use brs_image::detect::DetectorPool;
use image::RgbImage;

use crate::error::ApiError;

/// The crop around the largest detected face, resized to `side` pixels.
pub(crate) fn crop_face(
    pool: &DetectorPool,
    img: &RgbImage,
    framing: &CropConfig,
    side: u32,
) -> Result<RgbImage, ApiError> {
    let faces = pool
        .with(|d| d.detect(img))
        .map_err(|e| ApiError::Internal(format!("face detector: {e}")))?
        .map_err(|e| ApiError::Internal(format!("face detector: {e}")))?;
    let largest = faces
        .iter()
        .max_by(|a, b| a.area().total_cmp(&b.area()))
        .ok_or_else(|| ApiError::Unprocessable {
            code: "no_face",
            message: "crop=face: no face found in the image".into(),
        })?;
    let cfg = CropConfig {
        size: side,
        ..*framing
    };
    Ok(brs_image::crop::crop_face(img, largest, &cfg))
}
