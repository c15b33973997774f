//! Square face crops framed like photo2cartoon: more room above the face (hair) than below (chin),
//! out-of-frame areas padded by reflection or a flat colour, resized with Lanczos3.

use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::detect::Face;
use crate::resize::{Quality, resize_rgb};

/// How to fill the parts of the crop square that fall outside the photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "rgb")]
pub enum Pad {
    /// Mirror the photo at its edges (no hard border for the generator to learn).
    Reflect,
    /// A flat colour.
    Color([u8; 3]),
}

/// Crop framing. Margins are fractions of the face box's height (top, bottom) and width (sides).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CropConfig {
    /// Output side in pixels. Default 256.
    pub size: u32,
    /// Space above the face box, x box height. Default 0.8.
    pub margin_top: f32,
    /// Space below the face box, x box height. Default 0.3.
    pub margin_bottom: f32,
    /// Space on each side, x box width. Default 0.3.
    pub margin_side: f32,
    /// Default: reflect.
    pub pad: Pad,
}

impl Default for CropConfig {
    fn default() -> Self {
        Self {
            size: 256,
            margin_top: 0.8,
            margin_bottom: 0.3,
            margin_side: 0.3,
            pad: Pad::Reflect,
        }
    }
}

/// A framing value out of its range: which key, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct CropConfigError {
    /// The key as written in configs (`margin_top`, ...).
    pub key: &'static str,
    pub message: String,
}

/// The largest margin accepted, in box heights or widths: beyond it the "crop" is mostly padding.
pub const MAX_MARGIN: f32 = 4.0;

impl CropConfig {
    /// The one check of a framing, shared by every tool that reads one.
    pub fn validate(&self) -> Result<(), CropConfigError> {
        for (key, v) in [
            ("margin_top", self.margin_top),
            ("margin_bottom", self.margin_bottom),
            ("margin_side", self.margin_side),
        ] {
            if !(0.0..=MAX_MARGIN).contains(&v) {
                return Err(CropConfigError {
                    key,
                    message: format!("{v} (allowed 0..={MAX_MARGIN})"),
                });
            }
        }
        if !(16..=4096).contains(&self.size) {
            return Err(CropConfigError {
                key: "size",
                message: format!("{} (allowed 16..=4096)", self.size),
            });
        }
        Ok(())
    }
}

/// The square (x, y, side) in original pixels that [`crop_face`] cuts; may extend past the photo.
pub fn crop_square(face: &Face, cfg: &CropConfig) -> (i64, i64, u32) {
    let [x1, y1, x2, y2] = face.bbox.map(|v| if v.is_finite() { v } else { 0.0 });
    let (w, h) = ((x2 - x1).max(1.0), (y2 - y1).max(1.0));
    let left = x1 - cfg.margin_side.max(0.0) * w;
    let right = x2 + cfg.margin_side.max(0.0) * w;
    let top = y1 - cfg.margin_top.max(0.0) * h;
    let bottom = y2 + cfg.margin_bottom.max(0.0) * h;
    // Bounded so a wild box cannot ask for a gigantic buffer.
    let side = (right - left).max(bottom - top).clamp(1.0, 16_384.0);
    let (cx, cy) = ((left + right) / 2.0, (top + bottom) / 2.0);
    let side_px = side.round().max(1.0) as u32;
    let x = (cx - side / 2.0).round().clamp(-1e9, 1e9) as i64;
    let y = (cy - side / 2.0).round().clamp(-1e9, 1e9) as i64;
    (x, y, side_px)
}

/// Cuts the square around `face` (see [`CropConfig`]) and resizes it to `cfg.size`.
pub fn crop_face(img: &RgbImage, face: &Face, cfg: &CropConfig) -> RgbImage {
    let (mut x0, mut y0, mut side) = crop_square(face, cfg);
    let (w, h) = img.dimensions();
    // A square many times the photo is a broken box, not a face: cap it (same centre) so it
    // cannot cost a huge buffer.
    let cap = 4 * w.max(h).max(1);
    if side > cap {
        x0 += i64::from((side - cap) / 2);
        y0 += i64::from((side - cap) / 2);
        side = cap;
    }
    let size = cfg.size.max(1);
    if w == 0 || h == 0 {
        let fill = match cfg.pad {
            Pad::Color(c) => c,
            Pad::Reflect => [0, 0, 0],
        };
        return RgbImage::from_pixel(size, size, Rgb(fill));
    }
    let inside = x0 >= 0
        && y0 >= 0
        && x0 + i64::from(side) <= i64::from(w)
        && y0 + i64::from(side) <= i64::from(h);
    let square = if inside {
        image::imageops::crop_imm(img, x0 as u32, y0 as u32, side, side).to_image()
    } else {
        let mut sq = RgbImage::new(side, side);
        for (dx, dy, px) in sq.enumerate_pixels_mut() {
            let (sx, sy) = (x0 + i64::from(dx), y0 + i64::from(dy));
            let in_frame = (0..i64::from(w)).contains(&sx) && (0..i64::from(h)).contains(&sy);
            *px = match (in_frame, cfg.pad) {
                (true, _) => *img.get_pixel(sx as u32, sy as u32),
                (false, Pad::Color(c)) => Rgb(c),
                (false, Pad::Reflect) => *img.get_pixel(reflect(sx, w), reflect(sy, h)),
            };
        }
        sq
    };
    resize_rgb(&square, size, size, Quality::High)
}

/// Mirror index (edge pixel repeated once, "symmetric"), periodic so any offset lands inside.
fn reflect(i: i64, n: u32) -> u32 {
    let n = i64::from(n.max(1));
    let m = i.rem_euclid(2 * n);
    (if m < n { m } else { 2 * n - 1 - m }) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(b: [f32; 4]) -> Face {
        Face {
            bbox: b,
            score: 1.0,
            landmarks: vec![],
        }
    }

    #[test]
    fn square_has_more_room_above() {
        let cfg = CropConfig::default();
        // Box 100x100 at (100,100): region x 70..230 (160), y 20..230 (210) -> side 210.
        let (x, y, side) = crop_square(&face([100., 100., 200., 200.]), &cfg);
        assert_eq!(side, 210);
        assert_eq!((x, y), (45, 20));
        let above = 100 - y;
        let below = y + i64::from(side) - 200;
        assert!(above > below, "{above} vs {below}");
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(CropConfig::default().validate(), Ok(()));
        let e = CropConfig {
            margin_side: 9.0,
            ..CropConfig::default()
        }
        .validate()
        .expect_err("too wide");
        assert_eq!(e.key, "margin_side");
        let e = CropConfig {
            margin_top: f32::NAN,
            ..CropConfig::default()
        }
        .validate()
        .expect_err("nan");
        assert_eq!(e.key, "margin_top");
    }

    #[test]
    fn reflect_is_symmetric_and_periodic() {
        assert_eq!(reflect(-1, 4), 0);
        assert_eq!(reflect(-2, 4), 1);
        assert_eq!(reflect(4, 4), 3);
        assert_eq!(reflect(5, 4), 2);
        assert_eq!(reflect(3, 4), 3);
        for i in -100..100 {
            assert!(reflect(i, 3) < 3);
        }
        assert_eq!(reflect(7, 1), 0);
    }

    #[test]
    fn padding_fills_out_of_frame() {
        let img = RgbImage::from_pixel(20, 20, Rgb([10, 200, 30]));
        let cfg = CropConfig {
            size: 32,
            pad: Pad::Color([255, 0, 255]),
            ..CropConfig::default()
        };
        let out = crop_face(&img, &face([0., 0., 10., 10.]), &cfg);
        assert_eq!(out.dimensions(), (32, 32));
        assert_eq!(out.get_pixel(0, 0), &Rgb([255, 0, 255]));
        let refl = crop_face(
            &img,
            &face([0., 0., 10., 10.]),
            &CropConfig {
                size: 32,
                ..CropConfig::default()
            },
        );
        assert!(refl.pixels().all(|p| *p == Rgb([10, 200, 30])));
    }

    #[test]
    fn degenerate_boxes_do_not_panic() {
        let img = RgbImage::from_pixel(8, 8, Rgb([1, 2, 3]));
        for b in [
            [f32::NAN; 4],
            [5., 5., 5., 5.],
            [1e30, -1e30, 1e30, 1e30],
            [-50., -50., -40., -40.],
        ] {
            let out = crop_face(
                &img,
                &face(b),
                &CropConfig {
                    size: 16,
                    ..CropConfig::default()
                },
            );
            assert_eq!(out.dimensions(), (16, 16));
        }
    }
}
