#![allow(clippy::unwrap_used)]

use std::io::{Cursor, Write};

use brs_testkit::images::{mean_abs_diff, png_chunk};
use image::{DynamicImage, ImageEncoder, Rgb};

use super::*;

fn png_of(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode png");
    out
}

fn jpeg_of(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("encode jpeg");
    out
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
    })
}

/// An 8-bit RGB PNG written by hand (the png crate's encoder cannot interlace), optionally with
/// Adam7 interlacing, with extra chunks before IDAT.
fn png_with(img: &RgbImage, interlaced: bool, extra: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let mut raw = Vec::new();
    let mut scanline = |y: u32, xs: &mut dyn Iterator<Item = u32>| {
        raw.push(0); // filter: none
        for x in xs {
            raw.extend_from_slice(&img.get_pixel(x, y).0);
        }
    };
    if interlaced {
        for (x0, xs, y0, ys) in [
            (0, 8, 0, 8),
            (4, 8, 0, 8),
            (0, 4, 4, 8),
            (2, 4, 0, 4),
            (0, 2, 2, 4),
            (1, 2, 0, 2),
            (0, 1, 1, 2),
        ] {
            if x0 >= w || y0 >= h {
                continue;
            }
            for y in (y0..h).step_by(ys as usize) {
                scanline(y, &mut (x0..w).step_by(xs as usize));
            }
        }
    } else {
        for y in 0..h {
            scanline(y, &mut (0..w));
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&raw).expect("deflate");
    let idat = z.finish().expect("deflate");
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, u8::from(interlaced)]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr);
    for (kind, data) in extra {
        png_chunk(&mut out, kind, data);
    }
    png_chunk(&mut out, b"IDAT", &idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn zlib_zeros(n: usize) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len());
        z.write_all(&block[..k]).expect("deflate");
        left -= k;
    }
    z.finish().expect("deflate")
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
    assert_eq!(e.code(), "undecodable");
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

/// A little-endian TIFF block with one IFD entry: Orientation (0x0112) = 6, "rotate 90 CW".
fn exif_rotate_90() -> Vec<u8> {
    [
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
    .concat()
}

#[test]
fn exif_orientation_is_applied() {
    let src = gradient(4, 2);
    let mut jpeg = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
    enc.set_exif_metadata(exif_rotate_90())
        .expect("jpeg takes exif");
    enc.write_image(src.as_raw(), 4, 2, image::ExtendedColorType::Rgb8)
        .expect("encode");
    let out = decode_rgb(&jpeg, &DecodeLimits::default()).expect("decodes");
    assert_eq!(out.dimensions(), (2, 4));
    let png = png_with(&src, false, &[(b"eXIf", exif_rotate_90())]);
    let out = decode_rgb(&png, &DecodeLimits::default()).expect("decodes");
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
    assert_eq!(frames::gif(&gif), 2);
    assert_eq!(
        decode_rgb(&gif, &DecodeLimits::default()).unwrap_err(),
        DecodeError::Animated { frames: 2 }
    );
    let mut still = b"RIFF\0\0\0\0WEBP".to_vec();
    still.extend_from_slice(b"VP8 \x00\x00\x00\x00");
    assert_eq!(frames::webp(&still), 1);
}

/// A cut JPEG decodes to grey rows in lenient decoders; it must be refused instead.
#[test]
fn truncated_jpeg_is_corrupt() {
    let jpeg = jpeg_of(&gradient(64, 64), 90);
    for keep in [jpeg.len() - 2, jpeg.len() * 3 / 4, jpeg.len() / 2] {
        let e = decode_rgb(&jpeg[..keep], &DecodeLimits::default()).unwrap_err();
        assert_eq!(e.code(), "corrupt", "cut at {keep}: {e}");
    }
    // Trailing bytes after the end marker are tolerated (cameras append them).
    let mut tail = jpeg.clone();
    tail.extend_from_slice(b"\0\0trailer");
    assert!(decode_rgb(&tail, &DecodeLimits::default()).is_ok());
}

#[test]
fn truncated_png_is_corrupt() {
    for interlaced in [false, true] {
        let png = png_with(&gradient(40, 30), interlaced, &[]);
        for keep in [png.len() - 12, png.len() * 2 / 3] {
            let e = decode_rgb(&png[..keep], &DecodeLimits::default()).unwrap_err();
            assert_eq!(
                e.code(),
                "corrupt",
                "interlaced {interlaced}, cut at {keep}: {e}"
            );
        }
    }
}

/// A colour profile or a text chunk that inflates to far more than the decoder may allocate is
/// skipped, not inflated: with limits that leave no room for it the picture still decodes.
#[test]
fn metadata_bombs_are_skipped() {
    let bomb = zlib_zeros(64 << 20);
    let mut iccp = b"bomb\0\0".to_vec();
    iccp.extend_from_slice(&bomb);
    let mut ztxt = b"Comment\0\0".to_vec();
    ztxt.extend_from_slice(&bomb);
    let img = gradient(8, 8);
    let png = png_with(&img, false, &[(b"iCCP", iccp), (b"zTXt", ztxt)]);
    assert!(png.len() < 200_000, "the bomb is small: {}", png.len());
    let tight = DecodeLimits {
        max_pixels: 64,
        ..DecodeLimits::default()
    };
    assert!(tight.decoder_bytes() < 64 << 20);
    assert_eq!(decode_rgb(&png, &tight).expect("decodes"), img);
}

#[test]
fn reduced_png_keeps_the_short_side_and_averages_boxes() {
    let big = RgbImage::from_fn(301, 203, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 77]));
    for interlaced in [false, true] {
        let png = png_with(&big, interlaced, &[]);
        let full = decode_rgb(&png, &DecodeLimits::default()).expect("full");
        assert_eq!(full, big, "interlaced {interlaced}");
        let small = decode_rgb_at_least(&png, &DecodeLimits::default(), 50).expect("reduced");
        // 203 / 50 = 4: boxes of 4 x 4, the last ones partial.
        assert_eq!(small.dimensions(), (76, 51), "interlaced {interlaced}");
        // The top-left box averages x 0..4 and y 0..4: 1.5 -> 2 after rounding.
        assert_eq!(small.get_pixel(0, 0), &Rgb([2, 2, 77]));
        // The last column's box holds only x = 300.
        assert_eq!(small.get_pixel(75, 0).0[0], 44);
    }
}

#[test]
fn reduced_jpeg_uses_the_scaled_idct() {
    let img = RgbImage::from_fn(800, 600, |x, y| {
        Rgb([(x / 4) as u8, (y / 3) as u8, ((x + y) / 6) as u8])
    });
    let jpeg = jpeg_of(&img, 92);
    let full = decode_rgb(&jpeg, &DecodeLimits::default()).expect("full");
    assert_eq!(full.dimensions(), (800, 600));
    let small = decode_rgb_at_least(&jpeg, &DecodeLimits::default(), 100).expect("reduced");
    // 1/4 keeps the short side at 150 >= 100; 1/8 would give 75.
    assert_eq!(small.dimensions(), (200, 150));
    let reference = image::imageops::resize(&full, 200, 150, image::imageops::FilterType::Triangle);
    assert!(mean_abs_diff(&small, &reference) < 3.0);
}

#[test]
fn sixteen_bit_rgba_png_streams_into_a_small_image() {
    let (w, h) = (1200u32, 900u32);
    let mut raw = Vec::with_capacity((w * h * 8) as usize);
    for y in 0..h {
        for x in 0..w {
            for v in [x as u16 * 50, y as u16 * 70, 1000, 65535] {
                raw.extend_from_slice(&v.to_be_bytes());
            }
        }
    }
    let mut png = Vec::new();
    let mut enc = ::png::Encoder::new(&mut png, w, h);
    enc.set_color(::png::ColorType::Rgba);
    enc.set_depth(::png::BitDepth::Sixteen);
    let mut wr = enc.write_header().expect("header");
    wr.write_image_data(&raw).expect("data");
    wr.finish().expect("finish");
    let small = decode_rgb_at_least(&png, &DecodeLimits::default(), 256).expect("reduced");
    assert_eq!(small.dimensions(), (400, 300));
    assert_eq!(small.get_pixel(0, 0).0[2], (1000u32 >> 8) as u8);
}

#[test]
fn webp_decodes_and_is_never_reduced() {
    let img = gradient(40, 30);
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .write_image(img.as_raw(), 40, 30, image::ExtendedColorType::Rgb8)
        .expect("encode webp");
    assert_eq!(
        probe(&webp, &DecodeLimits::default()).unwrap().format,
        ImageFormat::Webp
    );
    let out = decode_rgb_at_least(&webp, &DecodeLimits::default(), 8).expect("decodes");
    assert_eq!(out, img);
    let e = decode_rgb(&webp[..webp.len() / 2], &DecodeLimits::default()).unwrap_err();
    assert_eq!(e.code(), "corrupt");
}

/// A TIFF block with IFD0 holding one orientation entry of `kind` and `count`, its value bytes
/// inline (`value`, padded to four) or, when longer, right after the IFD.
fn tiff(big_endian: bool, kind: u16, count: u32, value: &[u8]) -> Vec<u8> {
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut t = if big_endian {
        b"MM\0*".to_vec()
    } else {
        b"II*\0".to_vec()
    };
    t.extend_from_slice(&u32b(8));
    t.extend_from_slice(&u16b(1));
    t.extend_from_slice(&u16b(0x0112));
    t.extend_from_slice(&u16b(kind));
    t.extend_from_slice(&u32b(count));
    if value.len() <= 4 {
        let mut inline = value.to_vec();
        inline.resize(4, 0);
        t.extend_from_slice(&inline);
        t.extend_from_slice(&u32b(0));
    } else {
        t.extend_from_slice(&u32b(8 + 2 + 12 + 4));
        t.extend_from_slice(&u32b(0));
        t.extend_from_slice(value);
    }
    t
}

#[test]
fn exif_orientation_reads_ifd0_in_place() {
    use image::metadata::Orientation::*;
    let read = |block: &[u8]| exif::orientation(Some(block));
    assert_eq!(read(&exif_rotate_90()), Rotate90);
    assert_eq!(read(&tiff(true, 3, 1, &3u16.to_be_bytes())), Rotate180);
    assert_eq!(read(&tiff(false, 4, 1, &8u32.to_le_bytes())), Rotate270);
    assert_eq!(read(&tiff(true, 1, 1, &[2])), FlipHorizontal);
    // Three SHORTs do not fit in the entry: the first is read at the offset it holds.
    let three: Vec<u8> = [6u16, 1, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(read(&tiff(false, 3, 3, &three)), Rotate90);
    // Some writers keep the APP1 header.
    assert_eq!(
        read(&[b"Exif\0\0".as_slice(), &exif_rotate_90()].concat()),
        Rotate90
    );
    let rotate = exif_rotate_90();
    // The entry is all it needs (the next-IFD offset may be cut).
    assert_eq!(read(&rotate[..20]), Rotate90);
    // Broken or unusable: upright.
    for cut in [3, 8, 12, 19] {
        assert_eq!(read(&rotate[..cut]), NoTransforms, "cut at {cut}");
    }
    let mut far = tiff(false, 3, 3, &three);
    far.truncate(far.len() - 1);
    assert_eq!(read(&far), NoTransforms, "value past the end");
    assert_eq!(read(&tiff(false, 2, 2, b"6\0")), NoTransforms, "ASCII");
    assert_eq!(read(&tiff(false, 3, 0, &[])), NoTransforms, "no value");
    assert_eq!(read(&tiff(false, 3, 1, &9u16.to_le_bytes())), NoTransforms);
    assert_eq!(read(b"not a TIFF block"), NoTransforms);
    let mut lost = exif_rotate_90();
    lost[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(read(&lost), NoTransforms, "IFD0 outside the block");
    assert_eq!(exif::orientation(None), NoTransforms);
}

#[test]
fn png_stream_leaves_out_metadata_chunks_whole() {
    use std::io::{BufRead, Read, Seek, SeekFrom};
    let img = gradient(8, 4);
    let phys = vec![0, 0, 11, 19, 0, 0, 11, 19, 1];
    let full = png_with(
        &img,
        false,
        &[
            (b"iCCP", b"icc\0\0\x78\x9c".to_vec()),
            (b"pHYs", phys.clone()),
            (b"tEXt", b"Comment\0hello".to_vec()),
            (b"zTXt", b"Comment\0\0\x78\x9c".to_vec()),
            (b"iTXt", b"Comment\0\0\0\0\0hi".to_vec()),
            (b"eXIf", exif_rotate_90()),
        ],
    );
    let kept = png_with(&img, false, &[(b"pHYs", phys)]);
    let mut stream = png::WithoutMetadata::new(&full);
    let mut seen = Vec::new();
    stream.read_to_end(&mut seen).unwrap();
    assert_eq!(seen, kept);
    assert!(stream.fill_buf().unwrap().is_empty());

    // Positions are those of the stream the crate sees.
    assert_eq!(stream.seek(SeekFrom::End(0)).unwrap(), kept.len() as u64);
    assert_eq!(stream.seek(SeekFrom::Start(40)).unwrap(), 40);
    assert_eq!(stream.seek(SeekFrom::Current(-7)).unwrap(), 33);
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, kept[33..]);
    assert_eq!(
        stream.seek(SeekFrom::End(100)).unwrap(),
        kept.len() as u64,
        "stops at the end"
    );
    assert!(
        stream
            .seek(SeekFrom::Current(-(kept.len() as i64) - 1))
            .is_err()
    );

    // A cut chunk header, and what follows, are passed on as they are.
    let cut = &full[..full.len() - 5];
    let mut seen = Vec::new();
    png::WithoutMetadata::new(cut)
        .read_to_end(&mut seen)
        .unwrap();
    assert_eq!(seen, kept[..kept.len() - 5]);

    // The orientation still comes from the eXIf chunk, read where it lies.
    assert_eq!(png::exif_block(&full), Some(exif_rotate_90().as_slice()));
    assert_eq!(
        decode_rgb(&full, &DecodeLimits::default())
            .unwrap()
            .dimensions(),
        (4, 8)
    );
}

/// An APP2 segment holding the whole of a (fake) ICC profile.
fn icc_segment(profile: &[u8]) -> Vec<u8> {
    let mut payload = b"ICC_PROFILE\0\x01\x01".to_vec();
    payload.extend_from_slice(profile);
    let mut seg = vec![0xFF, 0xE2];
    seg.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
    seg.extend_from_slice(&payload);
    seg
}

#[test]
fn jpeg_decoder_is_shown_no_icc_profile() {
    let plain = jpeg_of(&gradient(16, 8), 90);
    let profile = b"a profile brs does not use".to_vec();
    let jpeg = [&plain[..2], &icc_segment(&profile), &plain[2..]].concat();
    // The control: read as it is, the decoder keeps the profile.
    let mut as_is = jpeg_decoder::Decoder::new(Cursor::new(&jpeg));
    as_is.read_info().unwrap();
    assert_eq!(as_is.icc_profile(), Some(profile));
    let mut d = jpeg::decoder(&jpeg, &DecodeLimits::default());
    d.read_info().unwrap();
    assert_eq!(d.icc_profile(), None);
    assert_eq!(
        decode_rgb(&jpeg, &DecodeLimits::default()).unwrap(),
        decode_rgb(&plain, &DecodeLimits::default()).unwrap()
    );
}
