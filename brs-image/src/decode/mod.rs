//! Bounded, validated image decoding: the one path by which untrusted bytes become pixels, for the
//! dataset builder and the HTTP server alike.
//!
//! Untrusted bytes go through a fixed sequence, cheapest check first, so a hostile file costs as
//! little as possible: byte size -> magic-byte sniff (never the file extension) -> animation check
//! -> header dimensions against the pixel limits (before any pixel is decoded) -> decode with every
//! decoder's own allocation limit set from the first header byte -> EXIF orientation -> RGB8.
//!
//! Metadata never costs memory (issue 24): brs does no colour management and shows no text, so
//! colour profiles and text never reach a decoder that would hold or inflate them (PNG iCCP, tEXt,
//! zTXt, iTXt and eXIf chunks are taken out of the stream the png crate reads; JPEG ICC profile
//! segments are made unrecognisable to jpeg-decoder, which skips them; image-webp reads no chunk
//! it is not asked for). EXIF is read only for the orientation, in place and without allocating:
//! from the PNG or WebP bytes themselves, or from the one APP1 segment (at most 64 KiB) that
//! jpeg-decoder keeps. A picture with small pixels decodes in well under 16 MiB of heap whatever
//! its metadata; the tests hold it to that.
//!
//! [`decode_rgb_at_least`] decodes straight to a reduced size where the format allows it, which is
//! what a server that feeds a 256 px model wants: JPEG through its scaled IDCT (1/2, 1/4, 1/8),
//! PNG row by row into a box filter (a 6320x6320 16-bit RGBA PNG costs a few hundred kilobytes
//! instead of 320 MB). WebP has no such path and is decoded whole, under the pixel limit.
//!
//! Animated GIF, WebP and PNG (APNG) with more than one frame are refused with
//! [`DecodeError::Animated`]: picking a frame silently would hand a training set or a user a
//! picture they did not choose. Alpha is composited over white (transparent areas of stickers and
//! fan art are usually meant as paper). Truncated files are refused as [`DecodeError::Corrupt`],
//! never padded with grey. Any panic inside a third-party decoder is caught and reported as corrupt
//! input.

mod exif;
mod frames;
mod jpeg;
mod other;
mod png;
mod webp;

use std::io::Read;
use std::path::Path;

use image::RgbImage;
use image::metadata::Orientation;

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

impl DecodeLimits {
    /// Bytes a decoder may allocate for its own working buffers beyond the output image: room for
    /// the largest allowed image at 16-bit RGBA (progressive JPEG coefficients, WebP's canvas)
    /// plus a fixed allowance for tables.
    fn decoder_bytes(&self) -> usize {
        let image = self.max_pixels.saturating_mul(8).saturating_add(16 << 20);
        usize::try_from(image).unwrap_or(usize::MAX)
    }
}

/// Formats we recognise, from their magic bytes.
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
}

/// Why an input could not be turned into an RGB image. Each variant has a stable [`code`](Self::code).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty input (0 bytes)")]
    Empty,
    #[error("input is {bytes} bytes, more than the limit of {limit}")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("not an image (png, jpeg, webp, gif, bmp or tiff): {0}")]
    NotAnImage(String),
    #[error("unsupported image: {0}")]
    Unsupported(String),
    #[error("image is {width}x{height}, over the limit ({limit})")]
    TooManyPixels {
        width: u32,
        height: u32,
        limit: String,
    },
    #[error("the decoder needs more memory than the limit allows ({0})")]
    OverMemoryLimit(String),
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
    #[error("animated image with {frames} frames; extract the frame you want first")]
    Animated { frames: u32 },
    #[error("could not read the file: {message}")]
    Io {
        kind: std::io::ErrorKind,
        message: String,
    },
}

impl DecodeError {
    /// A short, stable, machine-readable name for the failure (used in summaries and HTTP bodies).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge { .. } => "too_large",
            Self::NotAnImage(_) => "undecodable",
            Self::Unsupported(_) => "unsupported_type",
            Self::TooManyPixels { .. } | Self::OverMemoryLimit(_) => "too_many_pixels",
            Self::Corrupt(_) => "corrupt",
            Self::Animated { .. } => "animated",
            Self::Io { .. } => "io_error",
        }
    }

    fn io(e: &std::io::Error) -> Self {
        DecodeError::Io {
            kind: e.kind(),
            message: e.to_string(),
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

/// Describes what the first bytes look like, for the `NotAnImage` message.
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

/// Sniffs and reads the header only, applying every limit but decoding no pixel.
pub fn probe(bytes: &[u8], limits: &DecodeLimits) -> Result<Probe, DecodeError> {
    let format = check_prefix(bytes, limits)?;
    let (width, height) = guarded(|| match format {
        ImageFormat::Png => png::dimensions(bytes, limits),
        ImageFormat::Jpeg => jpeg::dimensions(bytes, limits),
        ImageFormat::Webp => webp::dimensions(bytes, limits),
        ImageFormat::Gif | ImageFormat::Bmp | ImageFormat::Tiff => {
            other::dimensions(bytes, format, limits)
        }
    })?;
    check_dimensions(width, height, limits)?;
    Ok(Probe {
        format,
        width,
        height,
    })
}

/// Decodes untrusted bytes into an upright RGB8 image at full size (see the module docs for the
/// order of checks).
pub fn decode_rgb(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    decode_rgb_at_least(bytes, limits, u32::MAX)
}

/// Like [`decode_rgb`], but free to return a smaller image as long as its shorter side stays at
/// least `min_side` pixels (or the whole image, if it is smaller than that): JPEG and PNG are then
/// decoded straight to the reduced size, bounding memory by the output rather than the input.
pub fn decode_rgb_at_least(
    bytes: &[u8],
    limits: &DecodeLimits,
    min_side: u32,
) -> Result<RgbImage, DecodeError> {
    let probe = probe(bytes, limits)?;
    let min_side = min_side.max(1);
    guarded(|| {
        let (img, orientation) = match probe.format {
            ImageFormat::Png => png::decode(bytes, limits, min_side)?,
            ImageFormat::Jpeg => jpeg::decode(bytes, limits, &probe, min_side)?,
            ImageFormat::Webp => webp::decode(bytes, limits)?,
            ImageFormat::Gif | ImageFormat::Bmp | ImageFormat::Tiff => {
                other::decode(bytes, probe.format, limits)?
            }
        };
        Ok(orient(img, orientation))
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
    let file = std::fs::File::open(path).map_err(|e| DecodeError::io(&e))?;
    let len = file.metadata().map_err(|e| DecodeError::io(&e))?.len();
    let limit = max_bytes as u64;
    if len > limit {
        return Err(DecodeError::TooLarge { bytes: len, limit });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DecodeError::io(&e))?;
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
    let format = sniff(bytes).ok_or_else(|| DecodeError::NotAnImage(describe_unknown(bytes)))?;
    let frames = match format {
        ImageFormat::Gif => frames::gif(bytes),
        ImageFormat::Webp => frames::webp(bytes),
        ImageFormat::Png => frames::apng(bytes),
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

/// Runs a decoder step, turning a panic inside a third-party decoder into `Corrupt`.
fn guarded<T>(f: impl FnOnce() -> Result<T, DecodeError>) -> Result<T, DecodeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(DecodeError::Corrupt("the decoder panicked".into())))
}

fn orient(img: RgbImage, orientation: Orientation) -> RgbImage {
    if orientation == Orientation::NoTransforms {
        return img;
    }
    let mut dynamic = image::DynamicImage::ImageRgb8(img);
    dynamic.apply_orientation(orientation);
    dynamic.into_rgb8()
}

/// Composites one 8-bit channel value over white with alpha `a`, rounded.
#[inline]
fn over_white(c: u8, a: u8) -> u8 {
    let (c, a) = (u32::from(c), u32::from(a));
    ((c * a + 255 * (255 - a) + 127) / 255) as u8
}

/// The integer reduction that keeps the shorter side at least `min_side`.
fn reduction(width: u32, height: u32, min_side: u32) -> u32 {
    (width.min(height) / min_side.max(1)).max(1)
}

#[cfg(test)]
mod tests;
