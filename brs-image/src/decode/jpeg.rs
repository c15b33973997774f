//! JPEG through `jpeg-decoder` (built without rayon: above 128 px wide it decodes each colour
//! component on a thread of its own), with its scaled IDCT for reduced decodes, a structural check
//! that refuses truncated files, and colour profiles hidden from it.

use std::io::Read;

use image::RgbImage;
use image::metadata::Orientation;
use jpeg_decoder::{Decoder, PixelFormat};

use super::{DecodeError, DecodeLimits, Probe, exif};

fn error(e: jpeg_decoder::Error) -> DecodeError {
    match e {
        jpeg_decoder::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("truncated".into())
        }
        jpeg_decoder::Error::Unsupported(u) => DecodeError::Unsupported(format!("jpeg: {u:?}")),
        other => DecodeError::Corrupt(other.to_string()),
    }
}

pub(super) fn decoder<'a>(bytes: &'a [u8], limits: &DecodeLimits) -> Decoder<WithoutIcc<'a>> {
    let mut d = Decoder::new(WithoutIcc { bytes, pos: 0 });
    d.set_max_decoding_buffer_size(limits.decoder_bytes());
    d
}

/// How an APP2 segment that holds part of an ICC profile begins, after its length.
const ICC_SIGNATURE: &[u8; 12] = b"ICC_PROFILE\0";

/// The JPEG as jpeg-decoder reads it, with the signature of every ICC profile segment spoiled.
///
/// A profile comes in APP2 segments of at most 64 KiB each, but there may be any number of them
/// and the decoder keeps them all (to join them on request): an upload of 300 such segments was
/// held whole, 18.8 MiB. Without the signature the decoder skips each segment unread, as it does
/// every segment it does not know. Marker, length and every other byte are left as they are, so
/// the decoder walks the file exactly as before. The signature is spoiled wherever `FF E2`, two
/// length bytes and `ICC_PROFILE\0` appear, so no segment the decoder could take for a profile is
/// missed, whatever the file's structure; a match inside another segment's payload (say, the
/// profile of a thumbnail inside the EXIF segment) loses one byte that the picture does not
/// depend on.
pub(super) struct WithoutIcc<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl WithoutIcc<'_> {
    /// True when `at` is where an ICC profile segment's signature begins.
    fn icc_signature_at(&self, at: usize) -> bool {
        at >= 4
            && self.bytes[at - 4] == 0xFF
            && self.bytes[at - 3] == 0xE2
            && self.bytes[at..].starts_with(ICC_SIGNATURE)
    }
}

impl Read for WithoutIcc<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.bytes[self.pos..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            if *b == ICC_SIGNATURE[0] && self.icc_signature_at(self.pos + i) {
                *b = 0;
            }
        }
        self.pos += n;
        Ok(n)
    }
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
        return Err(DecodeError::Corrupt(
            "truncated (no end-of-image marker)".into(),
        ));
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
    // The decoder keeps the last EXIF segment only, at most 64 KiB.
    let orientation = exif::orientation(d.exif_data());
    let img = RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| DecodeError::Corrupt("pixel buffer size".into()))?;
    Ok((img, orientation))
}
