//! WebP through `image-webp`, under a memory limit from its first byte; decoded whole (the format
//! has no reduced decode), which the pixel limit bounds.

use std::io::Cursor;

use image::RgbImage;
use image::metadata::Orientation;
use image_webp::{DecodingError, WebPDecoder};

use super::{DecodeError, DecodeLimits, exif_orientation, over_white};

fn error(e: DecodingError) -> DecodeError {
    match e {
        DecodingError::MemoryLimitExceeded => {
            DecodeError::OverMemoryLimit("webp decoder buffers".into())
        }
        DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("truncated".into())
        }
        other => DecodeError::Corrupt(other.to_string()),
    }
}

fn decoder<'a>(
    bytes: &'a [u8],
    limits: &DecodeLimits,
) -> Result<WebPDecoder<Cursor<&'a [u8]>>, DecodeError> {
    let mut d = WebPDecoder::new(Cursor::new(bytes)).map_err(error)?;
    d.set_memory_limit(limits.decoder_bytes());
    Ok(d)
}

pub(super) fn dimensions(bytes: &[u8], limits: &DecodeLimits) -> Result<(u32, u32), DecodeError> {
    Ok(decoder(bytes, limits)?.dimensions())
}

pub(super) fn decode(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(RgbImage, Orientation), DecodeError> {
    let mut d = decoder(bytes, limits)?;
    let (w, h) = d.dimensions();
    let size = d
        .output_buffer_size()
        .ok_or_else(|| DecodeError::OverMemoryLimit("webp output".into()))?;
    let mut buf = vec![0u8; size];
    d.read_image(&mut buf).map_err(error)?;
    let rgb: Vec<u8> = if d.has_alpha() {
        buf.chunks_exact(4)
            .flat_map(|p| [0, 1, 2].map(|c| over_white(p[c], p[3])))
            .collect()
    } else {
        buf
    };
    let orientation = exif_orientation(d.exif_metadata().ok().flatten().as_deref());
    let img = RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| DecodeError::Corrupt("pixel buffer size".into()))?;
    Ok((img, orientation))
}
