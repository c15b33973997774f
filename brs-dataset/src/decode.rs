//! Bounded, validated image decoding shared by the dataset builder and the HTTP server.
//!
//! Untrusted bytes go through a fixed sequence, cheapest check first, so a hostile file costs as
//! little as possible: byte size -> magic-byte sniff (never the file extension) -> animation check
//! -> header dimensions against the pixel limits (before any pixel is decoded) -> decode with the
//! `image` crate's own `Limits` set as a second fence -> EXIF orientation -> RGB8.
//!
//! Animated GIF, WebP and PNG (APNG) with more than one frame are refused with
//! [`DecodeError::Animated`]: picking a frame silently would hand a training set or a user a
//! picture they did not choose; extracting the wanted frame first is the user's call. A single
//! frame GIF/WebP/APNG decodes normally. Alpha is composited over white (transparent areas of
//! stickers and fan art are usually meant as paper, and the colour values under alpha 0 are
//! arbitrary). Any panic inside a third-party decoder is caught and reported as corrupt input.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

/// Limits applied before and during decoding. `Default`: 20 MiB, 40 megapixels, 16384 px per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted encoded size in bytes.
    pub max_bytes: usize,
    /// Largest accepted width x height.
    pub max_pixels: u64,
    /// Largest accepted width or height.
    pub max_side: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_bytes: 20 * 1024 * 1024,
            max_pixels: 40_000_000,
            max_side: 16_384,
        }
    }
}

/// Formats we accept, recognised from their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
    Gif,
    Bmp,
    Tiff,
}

impl ImageFormat {
    /// The IANA media type.
    pub fn mime(&self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
            Self::Bmp => "image/bmp",
            Self::Tiff => "image/tiff",
        }
    }

    /// A lower-case name (also the usual file extension).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Bmp => "bmp",
            Self::Tiff => "tiff",
        }
    }

    fn to_image(self) -> image::ImageFormat {
        match self {
            Self::Png => image::ImageFormat::Png,
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::Webp => image::ImageFormat::WebP,
            Self::Gif => image::ImageFormat::Gif,
            Self::Bmp => image::ImageFormat::Bmp,
            Self::Tiff => image::ImageFormat::Tiff,
        }
    }
}

/// Why an input could not be turned into an RGB image. Each variant has a stable [`code`](Self::code).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty input (0 bytes)")]
    Empty,
    #[error("input is {bytes} bytes, more than the limit of {limit}")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("not a supported image type (png, jpeg, webp, gif, bmp, tiff); sniffed: {0}")]
    Unsupported(String),
    #[error("image is {width}x{height}, over the limit ({limit})")]
    TooManyPixels {
        width: u32,
        height: u32,
        limit: String,
    },
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
    #[error("animated image with {frames} frames; extract the frame you want first")]
    Animated { frames: u32 },
    #[error("could not read the file: {0}")]
    Io(String),
}

impl DecodeError {
    /// A short, stable, machine-readable name for the failure (used in summaries and HTTP bodies).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge { .. } => "too_large",
            Self::Unsupported(_) => "unsupported_type",
            Self::TooManyPixels { .. } => "too_many_pixels",
            Self::Corrupt(_) => "corrupt",
            Self::Animated { .. } => "animated",
            Self::Io(_) => "io_error",
        }
    }
}

/// Recognises an image format from its first bytes.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::Webp)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some(ImageFormat::Tiff)
    } else if bytes.len() >= 18 && bytes.starts_with(b"BM") {
        // "BM" alone is too weak (text files start with it); require a known DIB header size.
        let dib = u32::from_le_bytes([bytes[14], bytes[15], bytes[16], bytes[17]]);
        matches!(dib, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124).then_some(ImageFormat::Bmp)
    } else {
        None
    }
}

/// Describes what the first bytes look like, for the `Unsupported` message.
fn describe_unknown(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(16)];
    let printable = head.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
    if printable {
        format!("text starting {:?}", String::from_utf8_lossy(head))
    } else {
        format!("bytes {}", hex::encode(head))
    }
}

/// Header facts read without decoding pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// Sniffs and reads the header only, applying every limit but not decoding pixels.
pub fn probe(bytes: &[u8], limits: &DecodeLimits) -> Result<Probe, DecodeError> {
    let format = check_prefix(bytes, limits)?;
    let (width, height) = guarded(|| {
        let decoder = open_decoder(bytes, format)?;
        Ok(decoder.dimensions())
    })?;
    check_dimensions(width, height, limits)?;
    Ok(Probe {
        format,
        width,
        height,
    })
}

/// Decodes untrusted bytes into an upright RGB8 image (see the module docs for the order of checks).
pub fn decode_rgb(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    let format = check_prefix(bytes, limits)?;
    guarded(|| {
        let mut decoder = open_decoder(bytes, format)?;
        let (width, height) = decoder.dimensions();
        check_dimensions(width, height, limits)?;
        decoder
            .set_limits(image_limits(limits))
            .map_err(map_image_error)?;
        // A broken EXIF block should not cost the picture: decode it upright-as-stored instead.
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut img = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
        img.apply_orientation(orientation);
        Ok(to_rgb8(img))
    })
}

/// Reads and decodes a file; its size is checked before any byte is read.
pub fn decode_file(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    let bytes = read_bounded(path, limits.max_bytes)?;
    decode_rgb(&bytes, limits)
}

/// Reads a whole file unless it is larger than `max_bytes` (checked from metadata first, then
/// enforced while reading in case the file grows).
pub fn read_bounded(path: &Path, max_bytes: usize) -> Result<Vec<u8>, DecodeError> {
    let file = std::fs::File::open(path).map_err(|e| DecodeError::Io(e.to_string()))?;
    let len = file
        .metadata()
        .map_err(|e| DecodeError::Io(e.to_string()))?
        .len();
    let limit = max_bytes as u64;
    if len > limit {
        return Err(DecodeError::TooLarge { bytes: len, limit });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DecodeError::Io(e.to_string()))?;
    if bytes.len() as u64 > limit {
        return Err(DecodeError::TooLarge {
            bytes: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// Size, sniff and animation checks: everything that needs no decoder.
fn check_prefix(bytes: &[u8], limits: &DecodeLimits) -> Result<ImageFormat, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(DecodeError::TooLarge {
            bytes: bytes.len() as u64,
            limit: limits.max_bytes as u64,
        });
    }
    let format = sniff(bytes).ok_or_else(|| DecodeError::Unsupported(describe_unknown(bytes)))?;
    let frames = match format {
        ImageFormat::Gif => gif_frames(bytes),
        ImageFormat::Webp => webp_frames(bytes),
        ImageFormat::Png => apng_frames(bytes),
        _ => 1,
    };
    if frames > 1 {
        return Err(DecodeError::Animated { frames });
    }
    Ok(format)
}

fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!(
            "header says {width}x{height}"
        )));
    }
    if width > limits.max_side || height > limits.max_side {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            limit: format!("{} px per side", limits.max_side),
        });
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            limit: format!("{} pixels", limits.max_pixels),
        });
    }
    Ok(())
}

fn image_limits(limits: &DecodeLimits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    // Room for the largest allowed image at 16-bit RGBA plus decoder working buffers.
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    l
}

fn open_decoder(bytes: &[u8], format: ImageFormat) -> Result<impl ImageDecoder + '_, DecodeError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.to_image());
    // Header parsing only; the strict limits are set once the dimensions are known.
    reader.limits(image::Limits::default());
    reader.into_decoder().map_err(map_image_error)
}

/// Runs a decoder step, turning a panic inside a third-party decoder into `Corrupt`.
fn guarded<T>(f: impl FnOnce() -> Result<T, DecodeError>) -> Result<T, DecodeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(DecodeError::Corrupt("the decoder panicked".into())))
}

fn map_image_error(e: image::ImageError) -> DecodeError {
    use image::ImageError as E;
    match e {
        E::Limits(l) => DecodeError::TooManyPixels {
            width: 0,
            height: 0,
            limit: l.to_string(),
        },
        E::Unsupported(u) => DecodeError::Unsupported(u.to_string()),
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("truncated".into())
        }
        other => DecodeError::Corrupt(other.to_string()),
    }
}

/// Converts any decoded layout (16-bit, grey, palette-expanded, CMYK-converted, float, alpha) to RGB8.
fn to_rgb8(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            // Over white: c*a + 255*(1-a), rounded.
            let v = (u32::from(src[c]) * a + 255 * (255 - a) + 127) / 255;
            dst[c] = v as u8;
        }
    }
    out
}

/// Counts image descriptors in a GIF by walking its block structure (no LZW decoding). Stops at
/// 2 because only "more than one" matters; malformed data returns what was counted so far and the
/// decoder reports the corruption.
fn gif_frames(b: &[u8]) -> u32 {
    let mut i = 13;
    if b.len() < i {
        return 0;
    }
    if b[10] & 0x80 != 0 {
        i += 3 * (1usize << ((b[10] & 0x07) + 1));
    }
    let mut frames = 0;
    let skip_sub_blocks = |mut i: usize| -> Option<usize> {
        loop {
            let n = *b.get(i)? as usize;
            i += 1;
            if n == 0 {
                return Some(i);
            }
            i += n;
        }
    };
    while let Some(&tag) = b.get(i) {
        match tag {
            0x2C => {
                frames += 1;
                if frames > 1 {
                    return frames;
                }
                let Some(&flags) = b.get(i + 9) else {
                    return frames;
                };
                i += 10;
                if flags & 0x80 != 0 {
                    i += 3 * (1usize << ((flags & 0x07) + 1));
                }
                i += 1; // LZW minimum code size
                match skip_sub_blocks(i) {
                    Some(n) => i = n,
                    None => return frames,
                }
            }
            0x21 => match skip_sub_blocks(i + 2) {
                Some(n) => i = n,
                None => return frames,
            },
            _ => return frames,
        }
    }
    frames
}

/// Counts ANMF chunks of an animated WebP (flag in VP8X); a still WebP counts as one.
fn webp_frames(b: &[u8]) -> u32 {
    let mut i = 12;
    let mut frames = 0;
    let mut animated = false;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let size = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        if id == b"VP8X" {
            animated = b.get(i + 8).is_some_and(|f| f & 0x02 != 0);
        } else if id == b"ANMF" {
            frames += 1;
        }
        i = i
            .saturating_add(8)
            .saturating_add(size)
            .saturating_add(size & 1);
    }
    if animated { frames.max(2) } else { 1 }
}

/// Reads the frame count of an APNG's acTL chunk (which precedes the image data); 1 for plain PNG.
fn apng_frames(b: &[u8]) -> u32 {
    let mut i = 8;
    while i + 8 <= b.len() {
        let len = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let kind = &b[i + 4..i + 8];
        if kind == b"acTL" {
            return b
                .get(i + 8..i + 12)
                .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]))
                .unwrap_or(1);
        }
        if kind == b"IDAT" || kind == b"IEND" {
            return 1;
        }
        i = i.saturating_add(12).saturating_add(len);
    }
    1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb};

    fn png_of(img: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("encode png");
        out
    }

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
        })
    }

    #[test]
    fn sniff_recognises_magic_not_extension() {
        let png = png_of(&DynamicImage::ImageRgb8(gradient(4, 4)));
        assert_eq!(sniff(&png), Some(ImageFormat::Png));
        assert_eq!(sniff(b"GIF89a......"), Some(ImageFormat::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageFormat::Webp));
        assert_eq!(sniff(b"BMP is a format name, not a file"), None);
        assert_eq!(sniff(b"hello"), None);
        assert_eq!(ImageFormat::Jpeg.mime(), "image/jpeg");
    }

    #[test]
    fn errors_have_stable_codes() {
        let l = DecodeLimits::default();
        assert_eq!(decode_rgb(b"", &l).map(|_| ()).unwrap_err().code(), "empty");
        let e = decode_rgb(b"plain text, not a picture", &l).unwrap_err();
        assert_eq!(e.code(), "unsupported_type");
        assert!(e.to_string().contains("plain text"), "{e}");
        let small = DecodeLimits { max_bytes: 4, ..l };
        assert_eq!(
            decode_rgb(b"12345", &small).unwrap_err().code(),
            "too_large"
        );
    }

    #[test]
    fn pixel_limits_apply_before_decoding() {
        let png = png_of(&DynamicImage::ImageRgb8(gradient(64, 32)));
        let l = DecodeLimits {
            max_pixels: 64 * 32 - 1,
            ..DecodeLimits::default()
        };
        match decode_rgb(&png, &l) {
            Err(DecodeError::TooManyPixels { width, height, .. }) => {
                assert_eq!((width, height), (64, 32))
            }
            other => panic!("expected too_many_pixels, got {other:?}"),
        }
        let l = DecodeLimits {
            max_side: 63,
            ..DecodeLimits::default()
        };
        assert_eq!(decode_rgb(&png, &l).unwrap_err().code(), "too_many_pixels");
        let ok = decode_rgb(&png, &DecodeLimits::default()).expect("decodes");
        assert_eq!(ok, gradient(64, 32));
    }

    #[test]
    fn alpha_is_composited_over_white() {
        let mut rgba = image::RgbaImage::new(2, 1);
        rgba.put_pixel(0, 0, image::Rgba([10, 20, 30, 0]));
        rgba.put_pixel(1, 0, image::Rgba([10, 20, 30, 255]));
        let rgb = decode_rgb(
            &png_of(&DynamicImage::ImageRgba8(rgba)),
            &DecodeLimits::default(),
        )
        .expect("decodes");
        assert_eq!(rgb.get_pixel(0, 0), &Rgb([255, 255, 255]));
        assert_eq!(rgb.get_pixel(1, 0), &Rgb([10, 20, 30]));
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 4x2 JPEG tagged "rotate 90 CW" (orientation 6) must come out 2x4.
        let src = gradient(4, 2);
        let mut jpeg = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
        // Minimal little-endian TIFF block with one IFD entry: Orientation (0x0112) = 6.
        let exif: Vec<u8> = [
            b"II*\0".as_slice(),
            &8u32.to_le_bytes(),
            &1u16.to_le_bytes(),
            &0x0112u16.to_le_bytes(),
            &3u16.to_le_bytes(),
            &1u32.to_le_bytes(),
            &6u16.to_le_bytes(),
            &[0, 0],
            &0u32.to_le_bytes(),
        ]
        .concat();
        enc.set_exif_metadata(exif).expect("jpeg takes exif");
        enc.write_image(src.as_raw(), 4, 2, image::ExtendedColorType::Rgb8)
            .expect("encode");
        let out = decode_rgb(&jpeg, &DecodeLimits::default()).expect("decodes");
        assert_eq!(out.dimensions(), (2, 4));
    }

    #[test]
    fn frame_counters() {
        // Two image descriptors with empty data sub-blocks.
        let mut gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec();
        for _ in 0..2 {
            gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 0]);
        }
        gif.push(0x3B);
        assert_eq!(gif_frames(&gif), 2);
        assert_eq!(
            decode_rgb(&gif, &DecodeLimits::default()).unwrap_err(),
            DecodeError::Animated { frames: 2 }
        );
        let mut still = b"RIFF\0\0\0\0WEBP".to_vec();
        still.extend_from_slice(b"VP8 \x00\x00\x00\x00");
        assert_eq!(webp_frames(&still), 1);
    }
}
