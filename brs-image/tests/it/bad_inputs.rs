//! Bad and unusual inputs (all generated here): each decodes to RGB or fails with its reason.

use brs_image::decode::{DecodeError, DecodeLimits, decode_file, decode_rgb, probe};
use image::{DynamicImage, ImageFormat, Rgb};

use brs_testkit::images::{encode, pillow_files, png_bomb, two_tone};
use brs_testkit::setup::fixture;

fn close(a: &Rgb<u8>, b: [u8; 3], tol: i32) -> bool {
    a.0.iter()
        .zip(b)
        .all(|(x, y)| (i32::from(*x) - i32::from(y)).abs() <= tol)
}

#[test]
fn every_kind_of_bad_or_unusual_input() {
    let l = DecodeLimits::default();
    let dir = brs_testkit::tempdir("brs-image-test-");
    let d = dir.path();
    pillow_files(d);

    // Zero bytes, text, truncated PNG: refused with their codes.
    assert_eq!(decode_rgb(b"", &l).unwrap_err(), DecodeError::Empty);
    assert_eq!(
        decode_rgb(b"name,age\nada,36\n", &l).unwrap_err().code(),
        "unsupported_type"
    );
    let png = encode(&DynamicImage::ImageRgb8(two_tone()), ImageFormat::Png);
    for cut in [8, 20, 40, png.len() / 2, png.len() - 13] {
        assert_eq!(
            decode_rgb(&png[..cut], &l).unwrap_err().code(),
            "corrupt",
            "cut at {cut}"
        );
    }
    // A truncated JPEG is refused, never returned with grey rows.
    let jpg = encode(&DynamicImage::ImageRgb8(two_tone()), ImageFormat::Jpeg);
    for cut in [3, 50, jpg.len() / 2, jpg.len() - 2] {
        assert_eq!(
            decode_rgb(&jpg[..cut], &l).unwrap_err().code(),
            "corrupt",
            "cut at {cut}"
        );
    }

    // Wrong extension: the magic bytes decide.
    std::fs::write(d.join("really-a-png.jpg"), &png).expect("write");
    assert_eq!(
        decode_file(&d.join("really-a-png.jpg"), &l).expect("png in .jpg"),
        two_tone()
    );

    // Decompression bomb: 100000 x 100000 header on a tiny file, refused from the header.
    let bomb = png_bomb(100_000, 100_000);
    assert!(bomb.len() < 100);
    match decode_rgb(&bomb, &l) {
        Err(DecodeError::TooManyPixels {
            width: 100_000,
            height: 100_000,
            ..
        }) => {}
        other => panic!("expected too_many_pixels, got {other:?}"),
    }
    assert_eq!(probe(&bomb, &l).unwrap_err().code(), "too_many_pixels");
    // Just over 40 Mpx but each side under 16384: the pixel count alone refuses it.
    assert_eq!(
        decode_rgb(&png_bomb(8000, 5001), &l).unwrap_err().code(),
        "too_many_pixels"
    );

    // CMYK JPEG -> the right colours in RGB.
    let cmyk = decode_file(&d.join("cmyk.jpg"), &l).expect("cmyk jpeg");
    assert_eq!(cmyk.dimensions(), (48, 32));
    assert!(
        close(cmyk.get_pixel(5, 5), [200, 40, 40], 24),
        "{:?}",
        cmyk.get_pixel(5, 5)
    );
    assert!(
        close(cmyk.get_pixel(40, 5), [30, 160, 60], 24),
        "{:?}",
        cmyk.get_pixel(40, 5)
    );

    // Palette PNG.
    let pal = decode_file(&d.join("palette.png"), &l).expect("palette png");
    assert!(
        close(pal.get_pixel(5, 5), [200, 40, 40], 2)
            && close(pal.get_pixel(40, 5), [30, 160, 60], 2)
    );

    // 16-bit RGB PNG: the high byte of each sample (libpng's strip_16), so decoding can stream.
    let deep = image::ImageBuffer::<Rgb<u16>, _>::from_fn(4, 4, |x, _| {
        Rgb([65535, (x * 20000) as u16, 0])
    });
    let deep = decode_rgb(
        &encode(&DynamicImage::ImageRgb16(deep), ImageFormat::Png),
        &l,
    )
    .expect("16-bit png");
    assert_eq!(deep.get_pixel(0, 0).0, [255, 0, 0]);
    assert_eq!(deep.get_pixel(3, 0).0[1], (60000u32 >> 8) as u8);

    // Grayscale (8 and 16 bit, and with alpha) and the camera fixture.
    let grey = image::GrayImage::from_pixel(3, 3, image::Luma([77]));
    let g = decode_rgb(
        &encode(&DynamicImage::ImageLuma8(grey), ImageFormat::Png),
        &l,
    )
    .expect("grey");
    assert_eq!(g.get_pixel(1, 1).0, [77, 77, 77]);
    let g16 = image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(3, 3, image::Luma([65535]));
    assert_eq!(
        decode_rgb(
            &encode(&DynamicImage::ImageLuma16(g16), ImageFormat::Png),
            &l
        )
        .expect("grey16")
        .get_pixel(0, 0)
        .0,
        [255; 3]
    );
    let la = image::ImageBuffer::<image::LumaA<u8>, _>::from_pixel(2, 2, image::LumaA([0, 0]));
    assert_eq!(
        decode_rgb(
            &encode(&DynamicImage::ImageLumaA8(la), ImageFormat::Png),
            &l
        )
        .expect("grey+alpha")
        .get_pixel(0, 0)
        .0,
        [255; 3]
    );
    let camera = decode_file(&fixture("camera.png"), &l).expect("camera");
    assert!(camera.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));

    // Animated GIF and WebP are refused with the frame count; a still WebP decodes.
    assert_eq!(
        decode_file(&d.join("anim.gif"), &l).unwrap_err(),
        DecodeError::Animated { frames: 2 }
    );
    assert_eq!(
        decode_file(&d.join("anim.webp"), &l).unwrap_err().code(),
        "animated"
    );
    assert_eq!(
        decode_file(&d.join("still.webp"), &l).expect("still webp"),
        two_tone()
    );
    // A single-frame GIF decodes.
    let gif = encode(&DynamicImage::ImageRgb8(two_tone()), ImageFormat::Gif);
    assert_eq!(decode_rgb(&gif, &l).expect("gif").dimensions(), (48, 32));

    // File size is checked before reading.
    let small = DecodeLimits {
        max_bytes: 100,
        ..l
    };
    assert_eq!(
        decode_file(&d.join("really-a-png.jpg"), &small)
            .unwrap_err()
            .code(),
        "too_large"
    );
    assert_eq!(
        decode_file(&d.join("missing.png"), &l).unwrap_err().code(),
        "io_error"
    );
}

