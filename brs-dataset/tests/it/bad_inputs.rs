//! Bad and unusual inputs (all generated here): each decodes to RGB or fails with its reason, and a
//! crop run over a folder of them finishes with every input accounted for in the summary.

use std::path::Path;
use std::process::Command;

use brs_dataset::decode::{DecodeError, DecodeLimits, decode_file, decode_rgb, probe};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

use crate::helpers::{bin, encode, fixture, setup_path, tempdir};

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real 1x1 PNG whose IHDR claims `w` x `h` (CRC fixed so only the size is wrong).
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut png = encode(
        &DynamicImage::ImageRgb8(RgbImage::new(1, 1)),
        ImageFormat::Png,
    );
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// CMYK JPEG, palette PNG, animated GIF and WebP from Pillow (the image crate writes none of them).
fn pillow_files(dir: &Path) {
    let script = r#"
import sys
from PIL import Image
d = sys.argv[1]
base = Image.new("RGB", (48, 32), (200, 40, 40))
base.paste((30, 160, 60), (24, 0, 48, 32))
base.convert("CMYK").save(d + "/cmyk.jpg", quality=95)
base.convert("P", palette=Image.ADAPTIVE, colors=4).save(d + "/palette.png")
frames = [base, Image.new("RGB", (48, 32), (0, 0, 255)), Image.new("RGB", (48, 32), (0, 255, 0))]
frames[0].save(d + "/anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
frames[0].save(d + "/anim.webp", save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
base.save(d + "/still.webp", lossless=True)
"#;
    let out = Command::new(setup_path("BRS_PYTHON"))
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pillow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn two_tone() -> RgbImage {
    RgbImage::from_fn(48, 32, |x, _| {
        if x < 24 {
            Rgb([200, 40, 40])
        } else {
            Rgb([30, 160, 60])
        }
    })
}

fn close(a: &Rgb<u8>, b: [u8; 3], tol: i32) -> bool {
    a.0.iter()
        .zip(b)
        .all(|(x, y)| (i32::from(*x) - i32::from(y)).abs() <= tol)
}

#[test]
fn every_kind_of_bad_or_unusual_input() {
    let l = DecodeLimits::default();
    let dir = tempdir();
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
    // A truncated JPEG: either an error or an image of the declared size, never a panic.
    let jpg = encode(&DynamicImage::ImageRgb8(two_tone()), ImageFormat::Jpeg);
    for cut in [3, 50, jpg.len() / 2] {
        if let Ok(img) = decode_rgb(&jpg[..cut], &l) {
            assert_eq!(img.dimensions(), (48, 32));
        }
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

    // 16-bit RGB PNG: scaled to 8 bits.
    let deep = image::ImageBuffer::<Rgb<u16>, _>::from_fn(4, 4, |x, _| {
        Rgb([65535, (x * 20000) as u16, 0])
    });
    let deep = decode_rgb(
        &encode(&DynamicImage::ImageRgb16(deep), ImageFormat::Png),
        &l,
    )
    .expect("16-bit png");
    assert_eq!(deep.get_pixel(0, 0).0, [255, 0, 0]);
    assert_eq!(deep.get_pixel(3, 0).0[1], (60000u32 * 255 / 65535) as u8);

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

#[test]
fn a_crop_run_over_bad_inputs_counts_every_one() {
    let dir = tempdir();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    pillow_files(&input);
    std::fs::copy(fixture("astronaut.png"), input.join("astronaut.png")).expect("copy");
    std::fs::write(input.join("empty.png"), b"").expect("write");
    std::fs::write(input.join("notes.jpg"), b"not a picture at all").expect("write");
    let png = std::fs::read(fixture("astronaut.png")).expect("read");
    std::fs::write(input.join("truncated.png"), &png[..png.len() / 3]).expect("write");
    std::fs::write(input.join("bomb.png"), png_bomb(100_000, 100_000)).expect("write");
    let out = dir.path().join("out");
    let run = bin()
        .args(["crop", "--quiet", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .output()
        .expect("run brs-dataset");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary"))
            .expect("json");
    let reasons = &summary["skip_reasons"];
    assert_eq!(summary["inputs"], 10);
    assert_eq!(summary["crops_written"], 1, "{summary}");
    assert_eq!(reasons["empty"], 1, "{summary}");
    assert_eq!(reasons["unsupported_type"], 1, "{summary}");
    assert_eq!(reasons["corrupt"], 1, "{summary}");
    assert_eq!(reasons["too_many_pixels"], 1, "{summary}");
    assert_eq!(reasons["animated"], 2, "{summary}");
    // The decodable non-faces (cmyk, palette, still webp) are "no_face", not errors.
    assert_eq!(reasons["no_face"], 3, "{summary}");
    let manifest = std::fs::read_to_string(out.join("manifest.jsonl")).expect("manifest");
    assert_eq!(manifest.lines().count(), 10);

    // A folder where every input fails: exit code 1 and the reason on stderr.
    let junk = dir.path().join("junk");
    std::fs::create_dir_all(&junk).expect("mkdir");
    std::fs::write(junk.join("a.png"), b"").expect("write");
    std::fs::write(junk.join("b.txt"), b"text").expect("write");
    let run = bin()
        .args(["crop", "--quiet", "--input"])
        .arg(&junk)
        .arg("--output")
        .arg(dir.path().join("o2"))
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("every one of the 2 inputs failed"));
}
