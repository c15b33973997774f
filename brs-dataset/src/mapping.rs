//! Known mappings from a photo to its rendering (the demo's drawn style, and simpler ones the
//! learning harness tries the trainer's settings on), and rendering a folder with one.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use image::{Rgb, RgbImage};
use serde::Serialize;

use brs_image::decode::{DecodeLimits, decode_file};
use brs_image::files::{list_files, png_bytes, write_atomic};
use brs_image::resize::{Quality, resize_rgb};

/// A known mapping from photos (A) to their rendering (B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mapping {
    /// The drawn style of `cartoon::cartoon`: flat regions, banded shading, dark outlines.
    Cartoon,
    /// A warm colour grade (`synth::warm`).
    Warm,
    /// A tone curve: lifted blacks, dimmed whites and more midtone contrast (`tone`).
    Tone,
    /// A Gaussian blur of sigma `BLUR_SIGMA` pixels.
    Blur,
}

/// Sigma of `Mapping::Blur`, pixels.
pub const BLUR_SIGMA: f32 = 1.5;

impl Mapping {
    pub const ALL: [Mapping; 4] = [
        Mapping::Cartoon,
        Mapping::Warm,
        Mapping::Tone,
        Mapping::Blur,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mapping::Cartoon => "cartoon",
            Mapping::Warm => "warm",
            Mapping::Tone => "tone",
            Mapping::Blur => "blur",
        }
    }

    /// The rendering of `img` (same size).
    pub fn apply(self, img: &RgbImage) -> RgbImage {
        match self {
            Mapping::Cartoon => crate::cartoon::cartoon(img),
            Mapping::Warm => crate::synth::warm(img),
            Mapping::Tone => tone(img),
            Mapping::Blur => image::imageops::blur(img, BLUR_SIGMA),
        }
    }
}

impl FromStr for Mapping {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mapping::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown mapping {s:?} (cartoon, warm, tone or blur)"))
    }
}

/// Per channel: v -> 0.08 + 0.84 * smoothstep(v), v in [0, 1].
pub fn tone(img: &RgbImage) -> RgbImage {
    let lut: Vec<u8> = (0..=255u16)
        .map(|v| {
            let v = f32::from(v) / 255.0;
            let s = v * v * (3.0 - 2.0 * v);
            ((0.08 + 0.84 * s) * 255.0).round() as u8
        })
        .collect();
    let mut out = img.clone();
    for p in out.pixels_mut() {
        *p = Rgb(p.0.map(|c| lut[usize::from(c)]));
    }
    out
}

/// What `render_folder` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RenderSummary {
    pub written: Vec<PathBuf>,
    /// Inputs that could not be decoded, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Renders every image of `input` (top level, sorted) with `mapping` into `output/<stem>.png`,
/// first resized to `size` x `size` when given (render at the size a model sees). Unreadable
/// inputs are skipped and listed.
pub fn render_folder(
    input: &Path,
    output: &Path,
    mapping: Mapping,
    size: Option<u32>,
) -> std::io::Result<RenderSummary> {
    let limits = DecodeLimits::default();
    let mut summary = RenderSummary::default();
    for rel in list_files(input, Some(output))? {
        if rel.components().count() != 1 {
            continue;
        }
        let path = input.join(&rel);
        let img = match decode_file(&path, &limits) {
            Ok(img) => img,
            Err(e) => {
                summary.skipped.push((path, e.to_string()));
                continue;
            }
        };
        let img = match size {
            Some(s) => resize_rgb(&img, s, s, Quality::High),
            None => img,
        };
        let stem = rel
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let out = output.join(format!("{stem}.png"));
        let png = png_bytes(&mapping.apply(&img)).map_err(std::io::Error::other)?;
        write_atomic(&out, &png)?;
        summary.written.push(out);
    }
    Ok(summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mappings_do_what_they_say() {
        let img = crate::synth::scene(0, 2, 32);
        assert_eq!(Mapping::Warm.apply(&img), crate::synth::warm(&img));
        // Tone: black lifts to 20, white dims to 235, mid grey stays.
        let grey = |v: u8| RgbImage::from_pixel(2, 2, Rgb([v, v, v]));
        assert_eq!(tone(&grey(0)).get_pixel(0, 0).0, [20, 20, 20]);
        assert_eq!(tone(&grey(255)).get_pixel(0, 0).0, [235, 235, 235]);
        assert_eq!(tone(&grey(128)).get_pixel(0, 0).0, [128, 128, 128]);
        // Blur keeps a flat image and softens a step.
        assert_eq!(Mapping::Blur.apply(&grey(90)), grey(90));
        let step = RgbImage::from_fn(
            16,
            4,
            |x, _| if x < 8 { Rgb([0; 3]) } else { Rgb([255; 3]) },
        );
        let b = Mapping::Blur.apply(&step);
        assert!(b.get_pixel(7, 1)[0] > 20 && b.get_pixel(8, 1)[0] < 235);
        for m in Mapping::ALL {
            assert_eq!(m.name().parse::<Mapping>().unwrap(), m);
        }
        assert!("sepia".parse::<Mapping>().is_err());
    }

    #[test]
    fn a_folder_renders_file_by_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
        std::fs::create_dir_all(&input).unwrap();
        let img = crate::synth::scene(1, 1, 50);
        img.save(input.join("face.jpg")).unwrap();
        std::fs::write(input.join("bad.png"), b"nope").unwrap();
        let s = render_folder(&input, &out, Mapping::Cartoon, Some(32)).unwrap();
        assert_eq!(s.written, [out.join("face.png")]);
        assert_eq!(s.skipped.len(), 1);
        let got = image::open(out.join("face.png")).unwrap().to_rgb8();
        let want = decode_file(&input.join("face.jpg"), &DecodeLimits::default()).unwrap();
        let want = Mapping::Cartoon.apply(&resize_rgb(&want, 32, 32, Quality::High));
        assert_eq!(got, want);
    }
}
