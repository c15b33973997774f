//! A contact sheet: thumbnails of the first inputs with face boxes (green), crop squares (red) and
//! landmarks (yellow) drawn, for a quick look at detector and margin settings before a long run.

use std::path::Path;

use image::{Rgb, RgbImage};
use rayon::prelude::*;

use brs_image::crop::{CropConfig, crop_square};
use brs_image::decode::{DecodeLimits, decode_file};
use brs_image::detect::{DetectorPool, Face};
use brs_image::files::{list_files, png_bytes, write_atomic};
use brs_image::resize::{Quality, resize_rgb};
use crate::run::RunError;

/// What went on the sheet.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PreviewSummary {
    pub images: usize,
    pub faces: usize,
    /// Inputs that could not be decoded (shown as grey tiles).
    pub unreadable: usize,
}

/// Draws up to `limit` inputs of `input` as `thumb`-pixel tiles into a PNG at `output`.
pub fn preview(
    input: &Path,
    output: &Path,
    pool: &DetectorPool,
    crop: &CropConfig,
    limit: usize,
    thumb: u32,
) -> Result<PreviewSummary, RunError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |cause| RunError::Io { path: p, cause }
    };
    let files: Vec<_> = list_files(input, None)
        .map_err(io(input))?
        .into_iter()
        .take(limit.max(1))
        .collect();
    if files.is_empty() {
        return Err(RunError::Setup(format!("no files in {}", input.display())));
    }
    let thumb = thumb.clamp(32, 1024);
    let tiles: Vec<(RgbImage, Option<usize>)> = files
        .par_iter()
        .map(|rel| {
            let Ok(img) = decode_file(&input.join(rel), &DecodeLimits::default()) else {
                return (RgbImage::from_pixel(thumb, thumb, Rgb([64, 64, 64])), None);
            };
            let faces = pool
                .with(|d| d.detect(&img))
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            (tile(&img, &faces, crop, thumb), Some(faces.len()))
        })
        .collect();
    let cols = (tiles.len() as f64).sqrt().ceil() as u32;
    let rows = (tiles.len() as u32).div_ceil(cols);
    let mut sheet = RgbImage::from_pixel(cols * thumb, rows * thumb, Rgb([255, 255, 255]));
    let mut summary = PreviewSummary {
        images: tiles.len(),
        ..PreviewSummary::default()
    };
    for (i, (t, n)) in tiles.iter().enumerate() {
        let (cx, cy) = ((i as u32 % cols) * thumb, (i as u32 / cols) * thumb);
        image::imageops::replace(&mut sheet, t, i64::from(cx), i64::from(cy));
        match n {
            Some(n) => summary.faces += n,
            None => summary.unreadable += 1,
        }
    }
    let png = png_bytes(&sheet).map_err(|e| RunError::Setup(e.to_string()))?;
    write_atomic(output, &png).map_err(io(output))?;
    Ok(summary)
}

/// The image fitted in a `thumb` square with the overlays drawn at thumbnail scale.
fn tile(img: &RgbImage, faces: &[Face], crop: &CropConfig, thumb: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let s = thumb as f32 / w.max(h) as f32;
    let small = resize_rgb(
        img,
        ((w as f32 * s).round() as u32).max(1),
        ((h as f32 * s).round() as u32).max(1),
        Quality::Fast,
    );
    let mut t = RgbImage::from_pixel(thumb, thumb, Rgb([255, 255, 255]));
    image::imageops::replace(&mut t, &small, 0, 0);
    for f in faces {
        let b = f.bbox.map(|v| v * s);
        rect(&mut t, b, Rgb([0, 220, 0]));
        let (x, y, side) = crop_square(f, crop);
        let sq = [
            x as f32,
            y as f32,
            (x + i64::from(side)) as f32,
            (y + i64::from(side)) as f32,
        ]
        .map(|v| v * s);
        rect(&mut t, sq, Rgb([230, 0, 0]));
        for [lx, ly] in &f.landmarks {
            rect(
                &mut t,
                [lx * s - 1.0, ly * s - 1.0, lx * s + 1.0, ly * s + 1.0],
                Rgb([255, 220, 0]),
            );
        }
    }
    t
}

/// A 1 px rectangle outline, clipped to the image.
fn rect(img: &mut RgbImage, b: [f32; 4], c: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let [x1, y1, x2, y2] = b.map(|v| {
        if v.is_finite() {
            v.round().clamp(-1e6, 1e6) as i64
        } else {
            -1
        }
    });
    let mut put = |x: i64, y: i64| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            img.put_pixel(x as u32, y as u32, c);
        }
    };
    for x in x1.max(-1)..=x2.min(w) {
        put(x, y1);
        put(x, y2);
    }
    for y in y1.max(-1)..=y2.min(h) {
        put(x1, y);
        put(x2, y);
    }
}
