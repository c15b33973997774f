//! Issue 24: metadata must not cost memory. Each test hands the decoder a picture of 8x4 pixels
//! carrying a colour profile, text or EXIF payload that inflates to hundreds of megabytes or fills
//! the whole upload, and checks that it decodes, upright or turned as its EXIF says, while the
//! decode holds at most 16 MiB of heap (two at once: at most 16 MiB each).

use std::io::Write;
use std::sync::{Barrier, OnceLock};

use brs_image::decode::{DecodeLimits, decode_rgb};
use brs_testkit::images::{encode, gradient, png_chunk};
use image::{DynamicImage, ImageFormat, RgbImage};

use crate::memory::{MIB, peak_of};

/// What one decode of a picture with small pixels may hold at once, whatever its metadata.
const BUDGET: usize = 16 * MIB;

/// Uploads are at most 20 MiB (the default limit); a payload that fills most of one.
const UPLOAD_FILLING: usize = 19 * MIB;

fn picture() -> RgbImage {
    gradient(8, 4)
}

/// Decodes under the default limits and checks the result and the peak heap.
fn decodes_within_budget(name: &str, bytes: &[u8], turned: bool) -> usize {
    let (decoded, peak) = peak_of(|| decode_rgb(bytes, &DecodeLimits::default()));
    let img = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = if turned {
        image::imageops::rotate90(&picture())
    } else {
        picture()
    };
    assert_eq!(img.dimensions(), want.dimensions(), "{name}: orientation");
    let lossy = bytes.starts_with(&[0xFF, 0xD8]);
    assert!(lossy || img == want, "{name}: pixels");
    eprintln!("{name}: peak {:.2} MiB", peak as f64 / MIB as f64);
    assert!(
        peak <= BUDGET,
        "{name}: the decode held {:.1} MiB at its peak",
        peak as f64 / MIB as f64
    );
    peak
}

/// A zlib stream of 400 MiB of zeros (about 400 KB), made once for all the PNG bombs.
fn bomb_stream() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let block = vec![0u8; MIB];
        for _ in 0..400 {
            z.write_all(&block).expect("deflate");
        }
        z.finish().expect("deflate")
    })
}

/// A little-endian TIFF block of `len` bytes whose first IFD says "rotate 90 degrees clockwise"
/// (orientation 6) after thousands of other entries, followed by seven more IFDs as full: what a
/// parser that keeps every entry pays for grows with the block, not with the one tag brs needs.
fn exif_block(len: usize) -> Vec<u8> {
    const IFDS: usize = 8;
    let entries = ((len - 8) / IFDS - 6) / 12;
    let entries = entries.min(usize::from(u16::MAX));
    let ifd_bytes = 2 + entries * 12 + 4;
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    for ifd in 0..IFDS {
        let next = if ifd == IFDS - 1 {
            0
        } else {
            8 + (ifd + 1) * ifd_bytes
        };
        t.extend_from_slice(&(entries as u16).to_le_bytes());
        for i in 0..entries - 1 {
            // A private tag, type LONG, count 1, value inline.
            t.extend_from_slice(&0x9999u16.to_le_bytes());
            t.extend_from_slice(&4u16.to_le_bytes());
            t.extend_from_slice(&1u32.to_le_bytes());
            t.extend_from_slice(&(i as u32).to_le_bytes());
        }
        let orientation = if ifd == 0 { 6u16 } else { 1 };
        t.extend_from_slice(&0x0112u16.to_le_bytes());
        t.extend_from_slice(&3u16.to_le_bytes());
        t.extend_from_slice(&1u32.to_le_bytes());
        t.extend_from_slice(&orientation.to_le_bytes());
        t.extend_from_slice(&[0, 0]);
        t.extend_from_slice(&(next as u32).to_le_bytes());
    }
    assert!(t.len() <= len, "the IFDs alone take {} bytes", t.len());
    t.resize(len, 0);
    t
}

/// A small TIFF block whose only entry is orientation 6.
fn small_exif_block() -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    t.extend_from_slice(&1u16.to_le_bytes());
    t.extend_from_slice(&0x0112u16.to_le_bytes());
    t.extend_from_slice(&3u16.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&6u16.to_le_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&0u32.to_le_bytes());
    t
}

/// The picture as a PNG with `extra` chunks right after IHDR.
fn png_with(extra: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let plain = encode(&DynamicImage::ImageRgb8(picture()), ImageFormat::Png);
    // Signature (8) and IHDR (4 + 4 + 13 + 4).
    let (head, tail) = plain.split_at(33);
    let mut out = head.to_vec();
    for (kind, data) in extra {
        png_chunk(&mut out, kind, data);
    }
    out.extend_from_slice(tail);
    out
}

#[test]
fn issue_24_png_iccp_bomb() {
    let mut iccp = b"bomb\0\0".to_vec();
    iccp.extend_from_slice(bomb_stream());
    decodes_within_budget("png iCCP", &png_with(&[(b"iCCP", iccp)]), false);
}

#[test]
fn issue_24_png_ztxt_bomb() {
    let mut ztxt = b"Comment\0\0".to_vec();
    ztxt.extend_from_slice(bomb_stream());
    decodes_within_budget("png zTXt", &png_with(&[(b"zTXt", ztxt)]), false);
}

#[test]
fn issue_24_png_compressed_itxt_bomb() {
    // Keyword, compressed (1) with zlib (0), no language, no translated keyword.
    let mut itxt = b"Description\0\x01\x00\0\0".to_vec();
    itxt.extend_from_slice(bomb_stream());
    decodes_within_budget("png iTXt", &png_with(&[(b"iTXt", itxt)]), false);
}

#[test]
fn issue_24_png_text_filling_the_upload() {
    let mut text = b"Comment\0".to_vec();
    text.resize(UPLOAD_FILLING, b'a');
    decodes_within_budget("png tEXt", &png_with(&[(b"tEXt", text)]), false);
}

#[test]
fn issue_24_png_exif_filling_the_upload_keeps_its_orientation() {
    let png = png_with(&[(b"eXIf", exif_block(UPLOAD_FILLING))]);
    decodes_within_budget("png eXIf", &png, true);
    // A second eXIf chunk is not allowed; the first one counts.
    let two = png_with(&[
        (b"eXIf", small_exif_block()),
        (b"eXIf", exif_block(4 * MIB)),
    ]);
    decodes_within_budget("png eXIf twice", &two, true);
}

/// The picture as a JPEG with `segments` (marker, payload) right after SOI.
fn jpeg_with(segments: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let plain = encode(&DynamicImage::ImageRgb8(picture()), ImageFormat::Jpeg);
    let mut out = plain[..2].to_vec();
    for (marker, payload) in segments {
        let len = u16::try_from(payload.len() + 2).expect("a segment holds at most 65533 bytes");
        out.extend_from_slice(&[0xFF, *marker]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(payload);
    }
    out.extend_from_slice(&plain[2..]);
    out
}

const SEGMENT: usize = 65533;

/// 300 APP2 chunks of one ICC profile: 19.6 MB, just under the upload limit. Each is at most
/// 64 KiB, but a decoder that joins them keeps them all.
fn jpeg_icc_bomb() -> Vec<u8> {
    let segments: Vec<(u8, Vec<u8>)> = (0..300)
        .map(|i| {
            let mut p = b"ICC_PROFILE\0".to_vec();
            p.extend_from_slice(&[(i % 255 + 1) as u8, 255]);
            p.resize(SEGMENT, 0x42);
            (0xE2, p)
        })
        .collect();
    let jpeg = jpeg_with(&segments);
    assert!(jpeg.len() < DecodeLimits::default().max_bytes);
    jpeg
}

#[test]
fn issue_24_jpeg_icc_profile_in_many_segments() {
    decodes_within_budget("jpeg APP2 ICC x300", &jpeg_icc_bomb(), false);
}

/// What a camera or an editor writes: EXIF that turns the picture, and a 1.5 MiB profile.
#[test]
fn issue_24_jpeg_with_a_large_profile_keeps_its_orientation() {
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend_from_slice(&small_exif_block());
    let mut segments = vec![(0xE1, exif)];
    segments.extend((0..24).map(|i| {
        let mut p = b"ICC_PROFILE\0".to_vec();
        p.extend_from_slice(&[i + 1, 24]);
        p.resize(SEGMENT, 0x42);
        (0xE2, p)
    }));
    decodes_within_budget("jpeg EXIF + 1.5 MiB ICC", &jpeg_with(&segments), true);
}

#[test]
fn issue_24_jpeg_app1_and_app13_segments_stay_bounded() {
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend_from_slice(&exif_block(SEGMENT - 6)[..]);
    let mut xmp = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    xmp.resize(SEGMENT, b' ');
    let mut psir = b"Photoshop 3.0\0".to_vec();
    psir.resize(SEGMENT, 0);
    let segments: Vec<(u8, Vec<u8>)> = (0..100)
        .flat_map(|_| {
            [
                (0xE1, xmp.clone()),
                (0xED, psir.clone()),
                (0xE1, exif.clone()),
            ]
        })
        .collect();
    let jpeg = jpeg_with(&segments);
    assert!(jpeg.len() < DecodeLimits::default().max_bytes);
    decodes_within_budget("jpeg APP1/APP13 x300", &jpeg, true);
}

/// The picture as an extended WebP: VP8X, then `before` chunks, the lossless image, `after`
/// chunks, and `tail` bytes as they are (a chunk cut short).
fn webp_with(
    flags: u8,
    before: &[(&[u8; 4], Vec<u8>)],
    after: &[(&[u8; 4], Vec<u8>)],
    tail: &[u8],
) -> Vec<u8> {
    let simple = encode(&DynamicImage::ImageRgb8(picture()), ImageFormat::WebP);
    assert_eq!(&simple[12..16], b"VP8L", "a lossless WebP");
    let chunk = |out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(kind);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
    };
    let (w, h) = picture().dimensions();
    let mut vp8x = vec![flags, 0, 0, 0];
    vp8x.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    chunk(&mut body, b"VP8X", &vp8x);
    for (kind, data) in before {
        chunk(&mut body, kind, data);
    }
    body.extend_from_slice(&simple[12..]);
    for (kind, data) in after {
        chunk(&mut body, kind, data);
    }
    body.extend_from_slice(tail);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

const WEBP_ICC: u8 = 0x20;
const WEBP_EXIF: u8 = 0x08;

#[test]
fn issue_24_webp_icc_profile_filling_the_upload() {
    let webp = webp_with(WEBP_ICC, &[(b"ICCP", vec![7; UPLOAD_FILLING])], &[], &[]);
    decodes_within_budget("webp ICCP", &webp, false);
}

#[test]
fn issue_24_webp_exif_filling_the_upload_keeps_its_orientation() {
    let small = webp_with(WEBP_EXIF, &[], &[(b"EXIF", small_exif_block())], &[]);
    decodes_within_budget("webp small EXIF", &small, true);
    let webp = webp_with(
        WEBP_EXIF,
        &[],
        &[(b"EXIF", exif_block(UPLOAD_FILLING))],
        &[],
    );
    decodes_within_budget("webp EXIF", &webp, true);
}

#[test]
fn issue_24_webp_exif_declaring_256_mib_but_cut_short() {
    let mut tail = b"EXIF".to_vec();
    tail.extend_from_slice(&(256 * MIB as u32).to_le_bytes());
    tail.extend_from_slice(&small_exif_block());
    let webp = webp_with(WEBP_EXIF, &[], &[], &tail);
    // Its orientation is in the part that is there, but a cut chunk is not trusted.
    decodes_within_budget("webp EXIF cut", &webp, false);
}

#[test]
fn issue_24_two_bombs_at_once_stay_within_their_budgets() {
    let png = png_with(&[(b"eXIf", exif_block(UPLOAD_FILLING))]);
    let jpeg = jpeg_icc_bomb();
    let start = Barrier::new(2);
    let peaks: Vec<usize> = std::thread::scope(|s| {
        let runs =
            [("png eXIf", &png, true), ("jpeg ICC", &jpeg, false)].map(|(name, bytes, turned)| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    decodes_within_budget(name, bytes, turned)
                })
            });
        runs.map(|r| r.join().expect("decode thread")).to_vec()
    });
    // Each peak is the decode's own; their sum bounds what both held at any one moment.
    let total: usize = peaks.iter().sum();
    assert!(
        total <= 2 * BUDGET,
        "two decodes held {:.1} MiB",
        total as f64 / MIB as f64
    );
}
