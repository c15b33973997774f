//! Two procedurally generated, unpaired image domains with a known mapping between them.
//!
//! Domain A: photo-like scenes (sky/ground gradient, shaded discs and boxes with soft lighting),
//! each channel normalised to the same mean and spread, as exposure and white balance do to photos.
//! Domain B: `to_domain_b` applied to *other* scenes of the same generator (B uses a seed derived
//! from, never equal to, A's), so the two sets are unpaired but a model's translation of a held-out
//! A image `a` can be scored against the exact answer `to_domain_b(a)`.
//!
//! `to_domain_b` is a cartoon look: a warmer palette (`PALETTE_SHIFT`), each channel quantised to
//! 4 flat levels (0, 85, 170, 255), and a black 1 px outline wherever the source luminance jumps across an object edge. Scenes keep
//! smooth shading (no noise) so outlines come from object boundaries, not from texture.

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which synthetic domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Domain {
    A,
    B,
}

/// Luminance step (0-255 scale, summed over x and y forward differences) that counts as an edge.
pub const EDGE_THRESHOLD: f32 = 48.0;

/// Image `index` of `domain`: A is `scene(index, seed)`, B is `to_domain_b(scene(index, seed_b))`
/// where `seed_b` differs from `seed`, so no B image is the cartoon of an A image.
pub fn generate(domain: Domain, index: u64, seed: u64, size: u32) -> RgbImage {
    match domain {
        Domain::A => scene(index, seed, size),
        Domain::B => to_domain_b(&scene(index, domain_b_seed(seed), size)),
    }
}

/// The scene seed domain B uses for a run seed.
pub fn domain_b_seed(seed: u64) -> u64 {
    seed ^ 0x9E37_79B9_7F4A_7C15
}

enum Shape {
    Disc { cx: f32, cy: f32, r: f32 },
    Rect { x0: f32, y0: f32, x1: f32, y1: f32 },
}

struct Object {
    shape: Shape,
    color: [f32; 3],
    light: [f32; 2],
}

/// A deterministic photo-like scene (`size` x `size`).
pub fn scene(index: u64, seed: u64, size: u32) -> RgbImage {
    let size = size.max(1);
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x1000_0000_01B3).wrapping_add(index));
    let col = |rng: &mut ChaCha8Rng| {
        [
            rng.random_range(20.0..235.0),
            rng.random_range(20.0..235.0),
            rng.random_range(20.0..235.0),
        ]
    };
    let sky_top = col(&mut rng);
    let sky_bottom = col(&mut rng);
    let ground = col(&mut rng);
    let horizon: f32 = rng.random_range(0.45..0.75);
    let n = rng.random_range(2..=5);
    let objects: Vec<Object> = (0..n)
        .map(|_| {
            let shape = if rng.random_bool(0.5) {
                Shape::Disc {
                    cx: rng.random_range(0.1..0.9),
                    cy: rng.random_range(0.15..0.9),
                    r: rng.random_range(0.08..0.22),
                }
            } else {
                let (x0, y0) = (rng.random_range(0.05..0.7), rng.random_range(0.1..0.7));
                Shape::Rect {
                    x0,
                    y0,
                    x1: x0 + rng.random_range(0.12..0.35),
                    y1: y0 + rng.random_range(0.12..0.35),
                }
            };
            Object {
                shape,
                color: col(&mut rng),
                light: [rng.random_range(-0.5..0.5), rng.random_range(-0.5..0.5)],
            }
        })
        .collect();
    let s = size as f32;
    let n = (size * size) as usize;
    let mut pixels = Vec::with_capacity(n);
    for y in 0..size {
        for x in 0..size {
            pixels.push(shade_pixel(
                x,
                y,
                s,
                horizon,
                [sky_top, sky_bottom, ground],
                &objects,
            ));
        }
    }
    // Photo-like exposure and white balance: every channel at the same mean and spread. The
    // generator opens with an instance norm, which makes it blind to a channel's mean and to the
    // image's contrast, so a domain that varied them freely could never be reconstructed.
    let mut mean = [0f32; 3];
    for p in &pixels {
        for c in 0..3 {
            mean[c] += p[c] / n as f32;
        }
    }
    let mut var = [0f32; 3];
    for p in &pixels {
        for c in 0..3 {
            var[c] += (p[c] - mean[c]).powi(2) / n as f32;
        }
    }
    let gain = var.map(|v| SCENE_SPREAD / v.sqrt().max(1.0));
    RgbImage::from_fn(size, size, |x, y| {
        let p = pixels[(y * size + x) as usize];
        Rgb(std::array::from_fn(|c| {
            (SCENE_MEAN + (p[c] - mean[c]) * gain[c])
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    })
}

/// Every scene's per-channel mean and standard deviation (0-255 scale).
pub const SCENE_MEAN: f32 = 128.0;
pub const SCENE_SPREAD: f32 = 40.0;

/// The colour of pixel (x, y) of a `s`-pixel scene before normalisation.
fn shade_pixel(
    x: u32,
    y: u32,
    s: f32,
    horizon: f32,
    [sky_top, sky_bottom, ground]: [[f32; 3]; 3],
    objects: &[Object],
) -> [f32; 3] {
    let (u, v) = ((x as f32 + 0.5) / s, (y as f32 + 0.5) / s);
    let mut c = if v < horizon {
        let t = v / horizon;
        mix(sky_top, sky_bottom, t)
    } else {
        let t = (v - horizon) / (1.0 - horizon);
        mix(
            ground,
            [ground[0] * 0.6, ground[1] * 0.6, ground[2] * 0.6],
            t,
        )
    };
    // Later objects are in front.
    for o in objects {
        let shade = match o.shape {
            Shape::Disc { cx, cy, r } => {
                let (dx, dy) = ((u - cx) / r, (v - cy) / r);
                let d2 = dx * dx + dy * dy;
                (d2 <= 1.0).then(|| 1.0 + 0.35 * (dx * o.light[0] + dy * o.light[1]) - 0.25 * d2)
            }
            Shape::Rect { x0, y0, x1, y1 } => {
                (u >= x0 && u <= x1 && v >= y0 && v <= y1).then(|| {
                    let (tx, ty) = ((u - x0) / (x1 - x0) - 0.5, (v - y0) / (y1 - y0) - 0.5);
                    1.0 + 0.3 * (tx * o.light[0] + ty * o.light[1])
                })
            }
        };
        if let Some(k) = shade {
            c = o.color.map(|ch| ch * k);
        }
    }
    c
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn luma(p: &Rgb<u8>) -> f32 {
    0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
}

/// Domain B's warm palette: added to each channel (0-255 scale) before it is quantised.
pub const PALETTE_SHIFT: [i32; 3] = [48, 8, -48];

/// The colour half of the mapping alone: `PALETTE_SHIFT` added to every pixel, clamped.
pub fn warm(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        *p = Rgb(std::array::from_fn(|c| {
            (i32::from(p[c]) + PALETTE_SHIFT[c]).clamp(0, 255) as u8
        }));
    }
    out
}

/// The A -> B mapping: warmed, 4-level flat colours plus black outlines (see the module docs).
/// Pixel (x, y) depends only on source pixels (x, y), (x+1, y) and (x, y+1) (edges replicate at
/// the border).
pub fn to_domain_b(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let p = img.get_pixel(x, y);
        let l = luma(p);
        let right = luma(img.get_pixel((x + 1).min(w - 1), y));
        let down = luma(img.get_pixel(x, (y + 1).min(h - 1)));
        if (right - l).abs() + (down - l).abs() > EDGE_THRESHOLD {
            Rgb([0, 0, 0])
        } else {
            Rgb(std::array::from_fn(|c| {
                let warm = (i32::from(p[c]) + PALETTE_SHIFT[c]).clamp(0, 255);
                ((warm + 42) / 85 * 85) as u8
            }))
        }
    })
}

/// What `write_dataset` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SynthSummary {
    pub written: usize,
    pub already_present: usize,
}

/// Writes `train` + `test` images per domain as `DIR/{trainA,trainB,testA,testB}/NNNNNN.png`.
/// Test images use indices `train..train+test`, so they are held out from training. Existing
/// files are kept (and counted), so an interrupted run resumes.
pub fn write_dataset(
    dir: &std::path::Path,
    train: u64,
    test: u64,
    size: u32,
    seed: u64,
) -> std::io::Result<SynthSummary> {
    use rayon::prelude::*;
    let jobs: Vec<(Domain, &str, u64)> = [Domain::A, Domain::B]
        .into_iter()
        .flat_map(|d| {
            let (tr, te) = match d {
                Domain::A => ("trainA", "testA"),
                Domain::B => ("trainB", "testB"),
            };
            (0..train)
                .map(move |i| (d, tr, i))
                .chain((train..train + test).map(move |i| (d, te, i)))
        })
        .collect();
    let results: Vec<std::io::Result<bool>> = jobs
        .par_iter()
        .map(|&(domain, sub, i)| {
            let path = dir.join(sub).join(format!("{i:06}.png"));
            if path.is_file() {
                return Ok(false);
            }
            let png = brs_image::files::png_bytes(&generate(domain, i, seed, size))
                .map_err(std::io::Error::other)?;
            brs_image::files::write_atomic(&path, &png)?;
            Ok(true)
        })
        .collect();
    let mut s = SynthSummary::default();
    for r in results {
        if r? {
            s.written += 1;
        } else {
            s.already_present += 1;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_distinct() {
        assert_eq!(scene(3, 7, 64), scene(3, 7, 64));
        assert_ne!(scene(3, 7, 64), scene(4, 7, 64));
        assert_ne!(scene(3, 7, 64), scene(3, 8, 64));
        assert_eq!(generate(Domain::A, 5, 1, 32), scene(5, 1, 32));
        // B is the cartoon of a different scene, never of the A image with the same index.
        let b = generate(Domain::B, 5, 1, 32);
        assert_eq!(b, to_domain_b(&scene(5, domain_b_seed(1), 32)));
        assert_ne!(b, to_domain_b(&scene(5, 1, 32)));
    }

    #[test]
    fn scenes_share_exposure_and_white_balance() {
        for i in 0..32 {
            let img = scene(i, 3, 64);
            for c in 0..3 {
                let v: Vec<f32> = img.pixels().map(|p| f32::from(p[c])).collect();
                let mean = v.iter().sum::<f32>() / v.len() as f32;
                let sd =
                    (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt();
                // Clipping at 0 and 255 may nudge both a little.
                assert!(
                    (mean - SCENE_MEAN).abs() < 4.0,
                    "scene {i} channel {c}: mean {mean}"
                );
                assert!(
                    (sd - SCENE_SPREAD).abs() < 4.0,
                    "scene {i} channel {c}: sd {sd}"
                );
            }
        }
    }

    #[test]
    fn domain_b_is_flat_colours_and_outlines() {
        let b = to_domain_b(&scene(0, 0, 96));
        let levels = [0u8, 85, 170, 255];
        assert!(b.pixels().all(|p| p.0.iter().all(|c| levels.contains(c))));
        let black = b.pixels().filter(|p| p.0 == [0, 0, 0]).count();
        assert!(black > 0 && black < 96 * 96 / 4, "outline pixels: {black}");
    }

    #[test]
    fn to_domain_b_known_pixels() {
        // A flat image has no outlines; a sharp vertical step outlines the column left of it.
        // (100, 20, 240) warms to (148, 28, 192), which quantises to (170, 0, 170).
        let mut img = RgbImage::from_pixel(4, 2, Rgb([100, 20, 240]));
        assert!(to_domain_b(&img).pixels().all(|p| p.0 == [170, 0, 170]));
        for y in 0..2 {
            img.put_pixel(3, y, Rgb([250, 250, 250]));
        }
        let b = to_domain_b(&img);
        assert_eq!(b.get_pixel(2, 0).0, [0, 0, 0]);
        assert_eq!(b.get_pixel(1, 0).0, [170, 0, 170]);
        assert_eq!(b.get_pixel(3, 0).0, [255, 255, 170]);
    }
}
