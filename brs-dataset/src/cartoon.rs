//! A drawn style computed from a photograph: its own palette, flat colour regions, banded shading
//! and dark outlines.
//!
//! The rendering is the demo's domain B. It is known exactly, so a translation of a held-out photo
//! can be scored against the rendering of the same photo, and built from what U-GAT-IT's generator
//! can see: the generator opens with a convolution and an instance norm, which removes any
//! constant added to a colour channel and any common contrast scale, so no model of that shape
//! can tell a photo's exposure or additive colour cast. A style that kept each photo's cast could
//! not be learned by it; so, like a drawn series with its own palette, every rendering has the
//! same overall exposure and warm white balance. Then everything is local (each output pixel
//! depends on a few pixels around it), which a convolutional generator learns from unpaired
//! examples. Steps, on colours in [0, 1]:
//! 0. Palette: each channel moved to the mean `PALETTE_MEAN`, all scaled by one gain so the mean
//!    of the channels' spreads is `PALETTE_SPREAD` (the gain is capped at `MAX_GAIN`, so a nearly
//!    flat photo is not blown up into noise).
//! 1. Flat regions: `SMOOTH_PASSES` passes of a 5x5 bilateral filter, which averages similar
//!    colours and stops at edges (texture and noise go, object boundaries stay).
//! 2. Simplified shading: the luma of the smoothed image is cut into `BANDS` flat bands joined by
//!    short smooth steps (a hard staircase aliases into 1-pixel jaggies no small network draws);
//!    each pixel keeps its colour's chroma, boosted by `SATURATION`, on its band's luma.
//! 3. Outlines: where a difference of Gaussians of that luma is strongly negative (the dark side
//!    of an edge), the colour is darkened toward black, softly over `OUTLINE_SOFTNESS`.
//!
//! Parameters are in pixels of the image given, so render at the size the model sees.

use image::{Rgb, RgbImage};

/// The mean of each channel of every rendering (a warm white balance).
pub const PALETTE_MEAN: [f32; 3] = [0.58, 0.5, 0.42];
/// The mean over channels of each channel's standard deviation in every rendering (its contrast).
pub const PALETTE_SPREAD: f32 = 0.22;
/// The largest contrast gain the palette step applies.
const MAX_GAIN: f32 = 4.0;
/// Bilateral passes that flatten colour regions.
pub const SMOOTH_PASSES: usize = 2;
/// Radius of the bilateral window (5x5).
const RADIUS: i64 = 2;
/// Spatial sigma of the bilateral filter, pixels.
const SIGMA_SPACE: f32 = 2.0;
/// Colour sigma of the bilateral filter (RGB distance in [0, 1] units).
const SIGMA_COLOUR: f32 = 0.1;
/// Luma bands of the simplified shading.
pub const BANDS: f32 = 4.0;
/// Width of the smooth step between two bands, as a fraction of a band.
const BAND_STEP: f32 = 0.15;
/// The banded luma is mapped into [LUMA_FLOOR, LUMA_FLOOR + LUMA_RANGE] (no pure black fills).
const LUMA_FLOOR: f32 = 0.1;
const LUMA_RANGE: f32 = 0.85;
/// Chroma gain: cartoon colours are more vivid than the photo's.
pub const SATURATION: f32 = 1.3;
/// Sigmas of the difference of Gaussians that finds outlines, pixels.
const DOG_SIGMAS: (f32, f32) = (1.0, 1.6);
/// DoG response (luma units) where an outline starts, and over how much it reaches full ink.
const OUTLINE_THRESHOLD: f32 = 0.02;
const OUTLINE_SOFTNESS: f32 = 0.02;
/// How dark a full outline is (1 = black).
const OUTLINE_INK: f32 = 0.85;

/// An image as three f32 planes in [0, 1], row-major.
struct Planes {
    w: usize,
    h: usize,
    rgb: Vec<[f32; 3]>,
}

fn luma(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// The drawn style of `img` (same size). Deterministic; see the module docs for the steps.
pub fn cartoon(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return img.clone();
    }
    let mut planes = palette(&Planes {
        w,
        h,
        rgb: img
            .pixels()
            .map(|p| p.0.map(|c| f32::from(c) / 255.0))
            .collect(),
    });
    for _ in 0..SMOOTH_PASSES {
        planes = bilateral(&planes);
    }
    let l: Vec<f32> = planes.rgb.iter().map(|&p| luma(p)).collect();
    let dog: Vec<f32> = gaussian(&l, w, h, DOG_SIGMAS.0)
        .iter()
        .zip(gaussian(&l, w, h, DOG_SIGMAS.1))
        .map(|(a, b)| a - b)
        .collect();
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        let p = planes.rgb[i];
        let band = LUMA_FLOOR + LUMA_RANGE * banded(l[i]);
        let ink = ((-dog[i] - OUTLINE_THRESHOLD) / OUTLINE_SOFTNESS).clamp(0.0, 1.0);
        let keep = 1.0 - OUTLINE_INK * ink;
        Rgb(p.map(|c| {
            let v = (band + (c - l[i]) * SATURATION) * keep;
            (v.clamp(0.0, 1.0) * 255.0).round() as u8
        }))
    })
}

/// Step 0: every channel at `PALETTE_MEAN`, one common gain to `PALETTE_SPREAD`, clamped.
fn palette(src: &Planes) -> Planes {
    let n = src.rgb.len() as f32;
    let mut mean = [0f32; 3];
    for p in &src.rgb {
        for c in 0..3 {
            mean[c] += p[c] / n;
        }
    }
    let mut var = [0f32; 3];
    for p in &src.rgb {
        for c in 0..3 {
            var[c] += (p[c] - mean[c]).powi(2) / n;
        }
    }
    let spread = var.iter().map(|v| v.sqrt()).sum::<f32>() / 3.0;
    let gain = (PALETTE_SPREAD / spread.max(1e-6)).min(MAX_GAIN);
    Planes {
        w: src.w,
        h: src.h,
        rgb: src
            .rgb
            .iter()
            .map(|p| {
                std::array::from_fn(|c| (PALETTE_MEAN[c] + (p[c] - mean[c]) * gain).clamp(0.0, 1.0))
            })
            .collect(),
    }
}

/// Luma in [0, 1] as `BANDS` flat bands with smooth steps between them, in [0, 1].
fn banded(l: f32) -> f32 {
    let t = l.clamp(0.0, 1.0) * BANDS;
    let floor = t.floor();
    let s = ((t - floor - 0.5) / BAND_STEP + 0.5).clamp(0.0, 1.0);
    (floor + s * s * (3.0 - 2.0 * s)) / BANDS
}

/// One pass of a 5x5 bilateral filter (edges replicate at the border).
fn bilateral(src: &Planes) -> Planes {
    let (w, h) = (src.w as i64, src.h as i64);
    let spatial: Vec<f32> = (-RADIUS..=RADIUS)
        .flat_map(|dy| {
            (-RADIUS..=RADIUS)
                .map(move |dx| (-((dx * dx + dy * dy) as f32) / (2.0 * SIGMA_SPACE.powi(2))).exp())
        })
        .collect();
    let inv_colour = 1.0 / (2.0 * SIGMA_COLOUR.powi(2));
    let mut rgb = Vec::with_capacity(src.rgb.len());
    for y in 0..h {
        for x in 0..w {
            let centre = src.rgb[(y * w + x) as usize];
            let mut sum = [0f32; 3];
            let mut weight = 0f32;
            let mut k = 0;
            for dy in -RADIUS..=RADIUS {
                let sy = (y + dy).clamp(0, h - 1);
                for dx in -RADIUS..=RADIUS {
                    let sx = (x + dx).clamp(0, w - 1);
                    let p = src.rgb[(sy * w + sx) as usize];
                    let d2: f32 = (0..3).map(|c| (p[c] - centre[c]).powi(2)).sum();
                    let wt = spatial[k] * (-d2 * inv_colour).exp();
                    k += 1;
                    for c in 0..3 {
                        sum[c] += p[c] * wt;
                    }
                    weight += wt;
                }
            }
            // The centre tap has weight 1, so `weight` is never 0.
            rgb.push(sum.map(|s| s / weight));
        }
    }
    Planes {
        w: src.w,
        h: src.h,
        rgb,
    }
}

/// A separable Gaussian blur of one plane (kernel cut at 3 sigma, edges replicate).
fn gaussian(src: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as i64;
    let kernel: Vec<f32> = (-r..=r)
        .map(|d| (-((d * d) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let (wi, hi) = (w as i64, h as i64);
    let mut tmp = vec![0f32; src.len()];
    for y in 0..hi {
        for x in 0..wi {
            tmp[(y * wi + x) as usize] = (-r..=r)
                .zip(&kernel)
                .map(|(d, k)| k * src[(y * wi + (x + d).clamp(0, wi - 1)) as usize])
                .sum();
        }
    }
    let mut out = vec![0f32; src.len()];
    for y in 0..hi {
        for x in 0..wi {
            out[(y * wi + x) as usize] = (-r..=r)
                .zip(&kernel)
                .map(|(d, k)| k * tmp[((y + d).clamp(0, hi - 1) * wi + x) as usize])
                .sum();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_flat_colour_becomes_the_palette_flat_and_without_outlines() {
        // A flat photo moves to PALETTE_MEAN (luma 0.5174, band 2 of 4: 0.1 + 0.85 * 0.5 =
        // 0.525), keeps its chroma around that luma (boosted 1.3x), and has no edges.
        let want = PALETTE_MEAN.map(|c| {
            let l = luma(PALETTE_MEAN);
            ((0.525 + (c - l) * SATURATION) * 255.0).round() as u8
        });
        for colour in [[102, 102, 102], [250, 20, 30], [0, 0, 0]] {
            let out = cartoon(&RgbImage::from_pixel(12, 9, Rgb(colour)));
            assert!(
                out.pixels().all(|p| p.0 == want),
                "{colour:?}: {:?}",
                out.get_pixel(0, 0)
            );
        }
    }

    #[test]
    fn exposure_and_additive_casts_do_not_change_the_rendering() {
        // What the generator cannot see (a constant added to a channel, a common contrast
        // scale) the rendering ignores too, up to rounding.
        let img = crate::synth::scene(4, 2, 48);
        let shifted = RgbImage::from_fn(48, 48, |x, y| {
            let p = img.get_pixel(x, y).0;
            Rgb([p[0] / 2 + 60, p[1] / 2 + 20, p[2] / 2 + 90])
        });
        let (a, b) = (cartoon(&img), cartoon(&shifted));
        let diff: f32 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (f32::from(*x) - f32::from(*y)).abs())
            .sum::<f32>()
            / a.as_raw().len() as f32;
        assert!(diff < 2.0, "mean difference {diff} of 255");
    }

    #[test]
    fn smooth_ramps_become_flat_bands() {
        // A horizontal luma ramp from 0 to 1: at most a few distinct values per band, and the
        // bands are flat away from the steps.
        let img = RgbImage::from_fn(64, 4, |x, _| {
            let v = (x * 4) as u8;
            Rgb([v, v, v])
        });
        let out = cartoon(&img);
        let row: Vec<u8> = (0..64).map(|x| out.get_pixel(x, 2)[0]).collect();
        let mut levels = row.clone();
        levels.dedup();
        assert!(levels.len() < 32, "{row:?}");
        // Three consecutive equal values occur within each band's flat part.
        let flats = row
            .windows(3)
            .filter(|w| w[0] == w[1] && w[1] == w[2])
            .count();
        assert!(flats > 30, "{row:?}");
    }

    #[test]
    fn a_dark_disc_on_light_gets_a_dark_outline_and_flat_inside() {
        let img = RgbImage::from_fn(48, 48, |x, y| {
            let d = ((x as f32 - 24.0).powi(2) + (y as f32 - 24.0).powi(2)).sqrt();
            if d < 12.0 {
                Rgb([60, 90, 160])
            } else {
                Rgb([230, 220, 200])
            }
        });
        let out = cartoon(&img);
        let lum = |x: u32, y: u32| luma(out.get_pixel(x, y).0.map(|c| f32::from(c) / 255.0));
        // Inside the disc, just inside its edge, the outline darkens it below its flat middle.
        let (centre, rim) = (lum(24, 24), lum(24 + 11, 24));
        assert!(rim < 0.6 * centre, "rim {rim} centre {centre}");
        // Far from the edge both regions are flat.
        assert_eq!(out.get_pixel(24, 24), out.get_pixel(22, 25));
        assert_eq!(out.get_pixel(2, 2), out.get_pixel(45, 3));
        // Colour survives, more saturated: the disc stays blue.
        let p = out.get_pixel(24, 24);
        assert!(p[2] > p[0] + 60, "{p:?}");
    }

    #[test]
    fn deterministic_and_same_size() {
        let img = crate::synth::scene(2, 3, 40);
        let a = cartoon(&img);
        assert_eq!(a.dimensions(), (40, 40));
        assert_eq!(a, cartoon(&img));
        assert_ne!(a, img);
    }
}
