//! GIF, BMP and TIFF (accepted by the dataset builder, refused by the server) through the `image`
//! crate, with its strict limits set before the header is parsed.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use super::{DecodeError, DecodeLimits, ImageFormat, over_white};

fn format(f: ImageFormat) -> image::ImageFormat {
    match f {
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Bmp => image::ImageFormat::Bmp,
        ImageFormat::Tiff => image::ImageFormat::Tiff,
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Webp => image::ImageFormat::WebP,
    }
}

fn limits_of(limits: &DecodeLimits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.decoder_bytes() as u64);
    l
}

fn error(e: image::ImageError) -> DecodeError {
    use image::ImageError as E;
    match e {
        E::Limits(l) => DecodeError::OverMemoryLimit(l.to_string()),
        E::Unsupported(u) => DecodeError::Unsupported(u.to_string()),
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("truncated".into())
        }
        other => DecodeError::Corrupt(other.to_string()),
    }
}

fn open<'a>(
    bytes: &'a [u8],
    f: ImageFormat,
    limits: &DecodeLimits,
) -> Result<impl ImageDecoder + 'a, DecodeError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format(f));
    reader.limits(limits_of(limits));
    reader.into_decoder().map_err(error)
}

pub(super) fn dimensions(
    bytes: &[u8],
    f: ImageFormat,
    limits: &DecodeLimits,
) -> Result<(u32, u32), DecodeError> {
    Ok(open(bytes, f, limits)?.dimensions())
}

pub(super) fn decode(
    bytes: &[u8],
    f: ImageFormat,
    limits: &DecodeLimits,
) -> Result<(RgbImage, Orientation), DecodeError> {
    let mut decoder = open(bytes, f, limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let img = DynamicImage::from_decoder(decoder).map_err(error)?;
    Ok((to_rgb8(img), orientation))
}

/// Any decoded layout (16-bit, grey, palette, float, alpha) to RGB8, alpha over white.
fn to_rgb8(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        for c in 0..3 {
            dst[c] = over_white(src[c], src[3]);
        }
    }
    out
}
