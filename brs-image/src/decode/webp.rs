//! WebP through `image-webp`, under a memory limit from its first byte; decoded whole (the format
//! has no reduced decode), which the pixel limit bounds.

use std::io::Cursor;

use image::RgbImage;
use image::metadata::Orientation;
use image_webp::{DecodingError, WebPDecoder};

use super::{DecodeError, DecodeLimits, exif, over_white};

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

/// One RIFF chunk of a WebP: its fourcc, and where its payload starts and ends (as declared).
fn chunk_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize, usize)> {
    let header = bytes.get(at..at.checked_add(8)?)?;
    let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let start = at + 8;
    Some((&header[..4], start, start.saturating_add(size)))
}

/// The payload of the first EXIF chunk of an extended (VP8X) WebP, if it is all there: the chunk
/// image-webp would read, found in place. image-webp copies a chunk it is asked for into a
/// buffer of the size its header declares (up to the decoder's memory limit) before finding out
/// whether the file holds that much: a cut chunk declaring 256 MiB cost 256 MiB. A cut chunk is
/// not used, as image-webp's read of it failed.
pub(super) fn exif_block(bytes: &[u8]) -> Option<&[u8]> {
    let riff_size = bytes
        .get(4..8)
        .map(|n| u32::from_le_bytes([n[0], n[1], n[2], n[3]]))?;
    // Chunks are looked for inside the RIFF container, as image-webp does.
    let riff = &bytes[..(riff_size as usize).saturating_add(8).min(bytes.len())];
    let (first, start, end) = chunk_at(riff, 12)?;
    if first != b"VP8X" {
        // A simple (VP8 or VP8L) file has no metadata.
        return None;
    }
    let mut at = end.saturating_add((end - start) & 1);
    while let Some((kind, start, end)) = chunk_at(riff, at) {
        if kind == b"EXIF" {
            return bytes.get(start..end);
        }
        at = end.saturating_add((end - start) & 1);
    }
    None
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
    let orientation = exif::orientation(exif_block(bytes));
    let img = RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| DecodeError::Corrupt("pixel buffer size".into()))?;
    Ok((img, orientation))
}
