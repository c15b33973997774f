use image::{DynamicImage, ImageFormat, imageops, imageops::FilterType};
use std::io::Cursor;
use std::time::Instant;
fn main() {
    let path = format!(
        "{}/grace_hopper.jpg",
        std::env::var("BRS_FIXTURES").unwrap()
    );
    let bytes = std::fs::read(path).unwrap();
    let n = 50;
    let t = Instant::now();
    let mut img = None;
    for _ in 0..n {
        img = Some(image::load_from_memory(&bytes).unwrap().to_rgb8());
    }
    println!(
        "decode {:.2} ms",
        t.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
    let img = img.unwrap();
    let t = Instant::now();
    let mut sq = None;
    for _ in 0..n {
        let s = img.width().min(img.height());
        let v = imageops::crop_imm(&img, 0, 0, s, s).to_image();
        sq = Some(imageops::resize(&v, 256, 256, FilterType::Triangle));
    }
    println!(
        "square+resize {:.2} ms",
        t.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
    let sq = sq.unwrap();
    let t = Instant::now();
    let mut len = 0;
    for _ in 0..n {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(sq.clone())
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        len = out.into_inner().len();
    }
    println!(
        "png default {:.2} ms ({len} bytes)",
        t.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let mut out = Cursor::new(Vec::new());
        let enc = image::codecs::png::PngEncoder::new_with_quality(
            &mut out,
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::Adaptive,
        );
        DynamicImage::ImageRgb8(sq.clone())
            .write_with_encoder(enc)
            .unwrap();
        len = out.into_inner().len();
    }
    println!(
        "png fast {:.2} ms ({len} bytes)",
        t.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    for i in 0..n {
        let p = dir.path().join(format!("f{i}"));
        let mut tmp = tempfile::NamedTempFile::new_in(dir.path()).unwrap();
        use std::io::Write;
        tmp.write_all(&vec![1u8; len]).unwrap();
        tmp.as_file().sync_all().unwrap();
        tmp.persist(&p).unwrap();
    }
    println!(
        "store put (fsync) {:.2} ms",
        t.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
}
