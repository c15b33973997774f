//! The one EXIF tag brs uses, the orientation, read in place.
//!
//! A general EXIF parser copies the block and keeps every entry of every IFD it meets: kamadak-exif
//! took 60 MiB for a 19 MiB block of 8 full IFDs, and a PNG or WebP EXIF payload may fill the
//! whole upload. The orientation lives in the first IFD, so only that IFD is walked, entry by
//! entry, on the borrowed bytes: nothing is allocated, whatever the block holds. Unlike
//! kamadak-exif, a broken later IFD does not cost the orientation.

use image::metadata::Orientation;

/// Orientation (0x0112) in the primary image's IFD.
const ORIENTATION: u16 = 0x0112;

/// The EXIF orientation in a raw TIFF-structured EXIF block; a missing or broken tag counts as
/// upright (a damaged tag should not cost the picture).
pub(super) fn orientation(exif: Option<&[u8]>) -> Orientation {
    exif.and_then(orientation_value)
        .and_then(|v| u8::try_from(v).ok())
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms)
}

/// The first value of the orientation entry of IFD0, if it is an unsigned integer (BYTE, SHORT or
/// LONG) that lies wholly inside the block.
fn orientation_value(block: &[u8]) -> Option<u32> {
    // Some writers keep the APP1 segment's "Exif\0\0" header in PNG and WebP chunks.
    let tiff = block.strip_prefix(b"Exif\0\0").unwrap_or(block);
    let big_endian = match tiff.get(..4)? {
        b"MM\0*" => true,
        b"II*\0" => false,
        _ => return None,
    };
    let bytes = |at: usize, n: usize| tiff.get(at..at.checked_add(n)?);
    let u16_at = |at: usize| {
        let b: [u8; 2] = bytes(at, 2)?.try_into().ok()?;
        Some(if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = bytes(at, 4)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd0 = usize::try_from(u32_at(4)?).ok()?;
    let entries = usize::from(u16_at(ifd0)?);
    for i in 0..entries {
        let entry = ifd0 + 2 + 12 * i;
        if u16_at(entry)? != ORIENTATION {
            continue;
        }
        let unit: usize = match u16_at(entry + 2)? {
            1 => 1,
            3 => 2,
            4 => 4,
            _ => return None,
        };
        let count = usize::try_from(u32_at(entry + 4)?).ok()?;
        if count == 0 {
            return None;
        }
        let size = unit.checked_mul(count)?;
        // Values of up to four bytes sit in the entry itself; longer ones at the offset it holds.
        let at = if size <= 4 {
            entry + 8
        } else {
            usize::try_from(u32_at(entry + 8)?).ok()?
        };
        bytes(at, size)?;
        return match unit {
            1 => tiff.get(at).copied().map(u32::from),
            2 => u16_at(at).map(u32::from),
            _ => u32_at(at),
        };
    }
    None
}
