//! Small images, encoded in memory.

use std::path::Path;
use std::process::Command;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

/// A deterministic gradient of `w` x `h`.
pub fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
    })
}

pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encode test image");
    out
}

/// A PNG of the gradient.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    encode(&DynamicImage::ImageRgb8(gradient(w, h)), ImageFormat::Png)
}

/// A JPEG of the gradient.
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    encode(&DynamicImage::ImageRgb8(gradient(w, h)), ImageFormat::Jpeg)
}

/// Appends a PNG chunk (length, type, data, CRC) to `out`: for PNGs written by hand, with chunks
/// the image crate's encoder does not write.
pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A real 1x1 PNG whose IHDR claims `w` x `h` (CRC fixed so only the size is wrong).
pub fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut png = encode(
        &DynamicImage::ImageRgb8(RgbImage::new(1, 1)),
        ImageFormat::Png,
    );
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]);
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    png
}

/// CMYK JPEG, palette PNG, animated GIF and WebP from Pillow (the image crate writes none of them).
pub fn pillow_files(dir: &Path) {
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
    let out = Command::new(crate::setup::python())
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

/// 48 x 32, red left half, green right half: what [`pillow_files`] draws.
pub fn two_tone() -> RgbImage {
    RgbImage::from_fn(48, 32, |x, _| {
        if x < 24 {
            Rgb([200, 40, 40])
        } else {
            Rgb([30, 160, 60])
        }
    })
}

/// The mean absolute difference of two RGB images of one size, per channel value (0 to 255).
pub fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}
