//! RGB8 resizing through fast_image_resize (SIMD convolution), with a plain fallback.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

/// Filter quality: `Fast` (bilinear) for detector input, `High` (Lanczos3) for saved crops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    Fast,
    High,
}

/// Resizes `src` to exactly `w` x `h` (both at least 1).
pub fn resize_rgb(src: &RgbImage, w: u32, h: u32, quality: Quality) -> RgbImage {
    let (w, h) = (w.max(1), h.max(1));
    if src.dimensions() == (w, h) {
        return src.clone();
    }
    let filter = match quality {
        Quality::Fast => FilterType::Bilinear,
        Quality::High => FilterType::Lanczos3,
    };
    let fast = || -> Option<RgbImage> {
        let (sw, sh) = src.dimensions();
        let src_ref = ImageRef::new(sw, sh, src.as_raw(), PixelType::U8x3).ok()?;
        let mut dst = Image::new(w, h, PixelType::U8x3);
        let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
        Resizer::new().resize(&src_ref, &mut dst, &opts).ok()?;
        RgbImage::from_raw(w, h, dst.into_vec())
    };
    // fast_image_resize only fails on impossible buffer/pixel-type mismatches; never lose the image.
    fast().unwrap_or_else(|| {
        let f = match quality {
            Quality::Fast => image::imageops::FilterType::Triangle,
            Quality::High => image::imageops::FilterType::Lanczos3,
        };
        image::imageops::resize(src, w, h, f)
    })
}
