//! Quality filters for crops: face size, score, sharpness (variance of the Laplacian) and
//! near-duplicates (64-bit difference hash compared by Hamming distance).

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// Filter thresholds. A value of 0 (or `None` for dedup) turns a filter off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Shorter side of the face box, in original pixels. Default 48 (smaller faces upscale to mush).
    pub min_face: f32,
    /// Detector score. Default 0.5.
    pub min_score: f32,
    /// Variance of the Laplacian of the grey crop. Default 15: only clearly blurred crops fail
    /// (sharp photos measure in the hundreds, upscaled small faces around 30-100).
    pub min_sharpness: f64,
    /// Crops whose dHash differs from an already kept crop in at most this many of 64 bits are
    /// duplicates. Default 5.
    pub max_duplicate_distance: Option<u32>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            min_face: 48.0,
            min_score: 0.5,
            min_sharpness: 15.0,
            max_duplicate_distance: Some(5),
        }
    }
}

fn grey(img: &RgbImage) -> Vec<f32> {
    img.pixels()
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect()
}

/// Variance of the 4-neighbour Laplacian over the interior pixels (0 for images under 3x3).
pub fn sharpness(img: &RgbImage) -> f64 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let g = grey(img);
    let (mut sum, mut sum2, mut n) = (0f64, 0f64, 0f64);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let i = y * w + x;
            let lap = f64::from(g[i - 1] + g[i + 1] + g[i - w] + g[i + w] - 4.0 * g[i]);
            sum += lap;
            sum2 += lap * lap;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sum2 / n - mean * mean).max(0.0)
}

/// Difference hash: the crop shrunk to 9x8 grey, one bit per horizontal neighbour comparison.
pub fn dhash(img: &RgbImage) -> u64 {
    let small = image::imageops::resize(img, 9, 8, image::imageops::FilterType::Triangle);
    let g = grey(&small);
    let mut bits = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            bits = (bits << 1) | u64::from(g[y * 9 + x] < g[y * 9 + x + 1]);
        }
    }
    bits
}

pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn flat_is_not_sharp_and_checkerboard_is() {
        let flat = RgbImage::from_pixel(16, 16, Rgb([90, 90, 90]));
        assert_eq!(sharpness(&flat), 0.0);
        let checker = RgbImage::from_fn(16, 16, |x, y| {
            if (x + y) % 2 == 0 {
                Rgb([0; 3])
            } else {
                Rgb([255; 3])
            }
        });
        assert!(sharpness(&checker) > 1000.0);
        let blurred = image::imageops::blur(&checker, 3.0);
        assert!(sharpness(&blurred) < sharpness(&checker) / 10.0);
    }

    #[test]
    fn dhash_is_stable_under_small_changes() {
        let a = crate::synth::scene(1, 1, 64);
        let mut b = a.clone();
        b.put_pixel(3, 3, Rgb([255, 0, 0]));
        let c = crate::synth::scene(2, 1, 64);
        assert!(hamming(dhash(&a), dhash(&b)) <= 2);
        assert!(hamming(dhash(&a), dhash(&c)) > 5);
    }
}
