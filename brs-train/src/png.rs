//! PNG files a reader never sees half-written (through brs-dataset's atomic writer).

use std::path::Path;

use brs_image::files::{png_bytes, write_atomic};
use image::RgbImage;

use crate::error::{Result, TrainError};

/// Encodes `img` and writes it to `path` through a temp file and a rename.
pub(crate) fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    let bytes = png_bytes(img).map_err(|cause| TrainError::Png {
        path: path.to_path_buf(),
        cause,
    })?;
    write_atomic(path, &bytes).map_err(|e| TrainError::io(path, e))
}
