//! JPEG through `jpeg-decoder`, single-threaded (the caller bounds concurrency), with its scaled
//! IDCT for reduced decodes and a structural check that refuses truncated files.

use std::io::Cursor;

use image::RgbImage;
use image::metadata::Orientation;
use jpeg_decoder::{Decoder, PixelFormat};

use super::{DecodeError, DecodeLimits, Probe, exif_orientation};

fn error(e: jpeg_decoder::Error) -> DecodeError {
    match e {
        jpeg_decoder::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("truncated".into())
        }
        jpeg_decoder::Error::Unsupported(u) => DecodeError::Unsupported(format!("jpeg: {u:?}")),
        other => DecodeError::Corrupt(other.to_string()),
    }
}

fn decoder<'a>(bytes: &'a [u8], limits: &DecodeLimits) -> Decoder<Cursor<&'a [u8]>> {
    let mut d = Decoder::new(Cursor::new(bytes));
    d.set_max_decoding_buffer_size(limits.decoder_bytes());
    d
}

pub(super) fn dimensions(bytes: &[u8], limits: &DecodeLimits) -> Result<(u32, u32), DecodeError> {
    let mut d = decoder(bytes, limits);
    d.read_info().map_err(error)?;
    let info = d
        .info()
        .ok_or_else(|| DecodeError::Corrupt("no frame header".into()))?;
    Ok((u32::from(info.width), u32::from(info.height)))
}

/// True when an end-of-image marker follows the first scan. Entropy-coded data cannot contain
/// `FF D9` (a data byte FF is stuffed as `FF 00`), so its absence means the file was cut; a
/// decoder would otherwise return the missing rows as flat grey.
fn has_end_marker(bytes: &[u8]) -> bool {
    let Some(sos) = bytes.windows(2).position(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9])
}

pub(super) fn decode(
    bytes: &[u8],
    limits: &DecodeLimits,
    probe: &Probe,
    min_side: u32,
) -> Result<(RgbImage, Orientation), DecodeError> {
    if !has_end_marker(bytes) {
        return Err(DecodeError::Corrupt("truncated (no end-of-image marker)".into()));
    }
    let mut d = decoder(bytes, limits);
    let short = probe.width.min(probe.height);
    if min_side < short {
        // Ask for the size that keeps the shorter side at `min_side`; the decoder picks the
        // largest of 1/8, 1/4, 1/2, 1 that still covers it.
        let scale = |v: u32| -> u16 {
            let want = u64::from(v) * u64::from(min_side) / u64::from(short);
            u16::try_from(want.max(1)).unwrap_or(u16::MAX)
        };
        d.scale(scale(probe.width), scale(probe.height))
            .map_err(error)?;
    }
    let pixels = d.decode().map_err(error)?;
    let info = d
        .info()
        .ok_or_else(|| DecodeError::Corrupt("no frame header".into()))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let n = w as usize * h as usize;
    let rgb: Vec<u8> = match info.pixel_format {
        PixelFormat::RGB24 => pixels,
        PixelFormat::L8 => pixels.iter().flat_map(|&v| [v; 3]).collect(),
        // Big-endian 16-bit grey: the high byte.
        PixelFormat::L16 => pixels.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        // jpeg-decoder undoes Adobe's inversion: values are ink amounts.
        PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let k = 255 - u32::from(p[3]);
                [0, 1, 2].map(|c| (((255 - u32::from(p[c])) * k + 127) / 255) as u8)
            })
            .collect(),
    };
    if rgb.len() != n * 3 {
        return Err(DecodeError::Corrupt(format!(
            "decoder returned {} bytes for {w}x{h}",
            rgb.len()
        )));
    }
    let orientation = exif_orientation(d.exif_data());
    let img = RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| DecodeError::Corrupt("pixel buffer size".into()))?;
    Ok((img, orientation))
}
