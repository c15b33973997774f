//! An unpaired training set made of a handful of photographs and a known rendering of them.
//!
//! Domain A holds random square crops of the photos; domain B holds the rendering (`Mapping`) of
//! *other* random crops of the same photos (its own random stream), so no B image is the
//! rendering of an A image. Photos named as held out never reach training: their crops fill testA
//! and, rendered, testB under the same file name, so a model's translation of testA can be scored
//! against testB (`brs-train evaluate`).
//!
//! Training images are written at `train_size` (the size brs-train's loader crops from: the
//! model's size plus its 30-pixel margin) and the rendering is applied at that size, so the loader
//! crops renderings at the scale the test images are rendered at (`test_size`).

use std::path::{Path, PathBuf};

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::mapping::Mapping;
use brs_image::decode::{DecodeLimits, decode_file};
use brs_image::files::{list_files, png_bytes, write_atomic};
use brs_image::resize::{Quality, resize_rgb};

/// What to build.
#[derive(Debug, Clone)]
pub struct PhotoSetSpec {
    /// Folder of photos (searched recursively; hidden files ignored).
    pub input: PathBuf,
    /// Dataset root: trainA, trainB, testA, testB are created inside.
    pub output: PathBuf,
    /// File names (relative to `input`) kept out of training for the test folders.
    pub holdout: Vec<String>,
    pub mapping: Mapping,
    /// Training images per domain.
    pub train_count: u64,
    /// Test crops per held-out photo (the first is its largest centred square).
    pub test_per_photo: u64,
    /// Side of training images (the loader's crop source: model size + 30).
    pub train_size: u32,
    /// Side of test images (the model's size).
    pub test_size: u32,
    pub seed: u64,
}

/// What `write_photoset` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PhotoSetSummary {
    pub mapping: &'static str,
    pub train_photos: Vec<String>,
    pub test_photos: Vec<String>,
    pub written: usize,
    pub already_present: usize,
    /// Files of the input folder that could not be decoded, with the reason.
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PhotoSetError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("held-out photo {0:?} is not a readable photo of the input folder")]
    UnknownHoldout(String),
    #[error("no held-out photo: name at least one (--holdout) for the test folders")]
    NoHoldout,
    #[error("no photo left for training in {0} once the held-out ones are set aside")]
    NoTrainingPhotos(PathBuf),
    #[error("encoding a PNG: {0}")]
    Encode(#[from] image::ImageError),
    #[error("sizes must be 8..=2048 pixels (train {train}, test {test})")]
    Size { train: u32, test: u32 },
}

/// Smallest side a crop may have, as a fraction of the photo's shorter side.
const MIN_CROP: f32 = 0.3;

/// A random square crop of `photo` resized to `side`.
fn random_crop(photo: &RgbImage, rng: &mut ChaCha8Rng, min_fraction: f32, side: u32) -> RgbImage {
    let (w, h) = photo.dimensions();
    let short = w.min(h);
    let crop = ((short as f32 * rng.random_range(min_fraction..=1.0)) as u32).clamp(1, short);
    let x = rng.random_range(0..=w - crop);
    let y = rng.random_range(0..=h - crop);
    let square = image::imageops::crop_imm(photo, x, y, crop, crop).to_image();
    resize_rgb(&square, side, side, Quality::High)
}

/// The largest centred square of `photo`, resized to `side`.
fn centre_crop(photo: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = photo.dimensions();
    let short = w.min(h);
    let square = image::imageops::crop_imm(photo, (w - short) / 2, (h - short) / 2, short, short);
    resize_rgb(&square.to_image(), side, side, Quality::High)
}

fn rng_for(seed: u64, stream: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng.set_word_pos(u128::from(index) << 20);
    rng
}

/// Builds the dataset `spec` describes. Existing files are kept (and counted), so an interrupted
/// run resumes; the same photos, spec and seed always give the same files.
pub fn write_photoset(spec: &PhotoSetSpec) -> Result<PhotoSetSummary, PhotoSetError> {
    let sizes = 8..=2048;
    if !sizes.contains(&spec.train_size) || !sizes.contains(&spec.test_size) {
        return Err(PhotoSetError::Size {
            train: spec.train_size,
            test: spec.test_size,
        });
    }
    if spec.holdout.is_empty() {
        return Err(PhotoSetError::NoHoldout);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| PhotoSetError::Io { path, cause }
    };
    let limits = DecodeLimits::default();
    let mut summary = PhotoSetSummary {
        mapping: spec.mapping.name(),
        ..PhotoSetSummary::default()
    };
    let mut train = Vec::new();
    let mut test = Vec::new();
    for rel in list_files(&spec.input, Some(&spec.output)).map_err(io(&spec.input))? {
        let name = rel.to_string_lossy().into_owned();
        match decode_file(&spec.input.join(&rel), &limits) {
            Ok(img) if spec.holdout.contains(&name) => test.push((name, img)),
            Ok(img) => train.push((name, img)),
            Err(e) => summary.skipped.push((name, e.to_string())),
        }
    }
    if let Some(missing) = spec
        .holdout
        .iter()
        .find(|h| !test.iter().any(|(name, _)| name == *h))
    {
        return Err(PhotoSetError::UnknownHoldout(missing.clone()));
    }
    if train.is_empty() {
        return Err(PhotoSetError::NoTrainingPhotos(spec.input.clone()));
    }
    summary.train_photos = train.iter().map(|(n, _)| n.clone()).collect();
    summary.test_photos = test.iter().map(|(n, _)| n.clone()).collect();

    // One job per output file pair; each job owns a random stream derived from the seed, the
    // domain and its index, so files can be made in any order (and again after an interruption).
    enum Job {
        Train { domain: char, index: u64 },
        Test { photo: usize, index: u64 },
    }
    let mut jobs = Vec::new();
    for domain in ['A', 'B'] {
        jobs.extend((0..spec.train_count).map(|index| Job::Train { domain, index }));
    }
    for photo in 0..test.len() {
        jobs.extend((0..spec.test_per_photo).map(|index| Job::Test { photo, index }));
    }
    // Writes `img()` to `path` unless the file exists; true if it wrote.
    let put = |path: &Path, img: &dyn Fn() -> RgbImage| -> Result<bool, PhotoSetError> {
        if path.is_file() {
            return Ok(false);
        }
        write_atomic(path, &png_bytes(&img())?).map_err(io(path))?;
        Ok(true)
    };
    let results: Vec<Result<Vec<bool>, PhotoSetError>> = jobs
        .par_iter()
        .map(|job| match *job {
            Job::Train { domain, index } => {
                let photo = &train[(index % train.len() as u64) as usize].1;
                let stream = if domain == 'A' { 1 } else { 2 };
                let path = spec
                    .output
                    .join(format!("train{domain}"))
                    .join(format!("{index:06}.png"));
                let make = || {
                    let mut rng = rng_for(spec.seed, stream, index);
                    let crop = random_crop(photo, &mut rng, MIN_CROP, spec.train_size);
                    if domain == 'A' {
                        crop
                    } else {
                        spec.mapping.apply(&crop)
                    }
                };
                Ok(vec![put(&path, &make)?])
            }
            Job::Test { photo, index } => {
                let (name, img) = &test[photo];
                let stem = Path::new(name)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| format!("photo{photo}"));
                let file = format!("{stem}-{index:02}.png");
                let crop = || {
                    if index == 0 {
                        centre_crop(img, spec.test_size)
                    } else {
                        let mut rng = rng_for(spec.seed, 3 + photo as u64, index);
                        random_crop(img, &mut rng, 0.5, spec.test_size)
                    }
                };
                let a = put(&spec.output.join("testA").join(&file), &crop)?;
                let b = put(&spec.output.join("testB").join(&file), &|| {
                    spec.mapping.apply(&crop())
                })?;
                Ok(vec![a, b])
            }
        })
        .collect();
    for wrote in results {
        for wrote in wrote? {
            if wrote {
                summary.written += 1;
            } else {
                summary.already_present += 1;
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn photos(dir: &Path) {
        for (i, name) in ["one.png", "two.png", "three.png"].iter().enumerate() {
            let img = crate::synth::scene(i as u64, 1, 80 + 20 * i as u32);
            img.save(dir.join(name)).unwrap();
        }
        std::fs::write(dir.join("broken.jpg"), b"not a photo").unwrap();
    }

    fn spec(input: &Path, output: &Path, mapping: Mapping) -> PhotoSetSpec {
        PhotoSetSpec {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            holdout: vec!["two.png".into()],
            mapping,
            train_count: 6,
            test_per_photo: 3,
            train_size: 40,
            test_size: 24,
            seed: 4,
        }
    }

    fn read(dir: &Path, sub: &str) -> Vec<(String, RgbImage)> {
        let mut v: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let img = image::open(e.path()).unwrap().to_rgb8();
                (e.file_name().to_string_lossy().into_owned(), img)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn unpaired_training_and_paired_held_out_tests() {
        let tmp = tempfile::tempdir().unwrap();
        let (input, out) = (tmp.path().join("photos"), tmp.path().join("data"));
        std::fs::create_dir_all(&input).unwrap();
        photos(&input);
        let s = write_photoset(&spec(&input, &out, Mapping::Cartoon)).unwrap();
        assert_eq!(s.train_photos, ["one.png", "three.png"]);
        assert_eq!(s.test_photos, ["two.png"]);
        assert_eq!((s.written, s.already_present), (6 + 6 + 3 + 3, 0));
        assert_eq!(s.skipped.len(), 1);
        assert_eq!(s.skipped[0].0, "broken.jpg");

        let (a, b) = (read(&out, "trainA"), read(&out, "trainB"));
        assert_eq!((a.len(), b.len()), (6, 6));
        assert!(a.iter().all(|(_, i)| i.dimensions() == (40, 40)));
        // Unpaired: no B image is the rendering of any A image.
        for (_, ib) in &b {
            assert!(a.iter().all(|(_, ia)| Mapping::Cartoon.apply(ia) != *ib));
        }
        // Paired tests: testB is exactly the rendering of testA, file by file.
        let (ta, tb) = (read(&out, "testA"), read(&out, "testB"));
        assert_eq!(ta.len(), 3);
        for ((na, ia), (nb, ib)) in ta.iter().zip(&tb) {
            assert_eq!(na, nb);
            assert_eq!(ia.dimensions(), (24, 24));
            assert_eq!(Mapping::Cartoon.apply(ia), *ib);
        }
        assert_eq!(ta[0].0, "two-00.png");

        // A second run writes nothing and leaves the files as they were.
        let again = write_photoset(&spec(&input, &out, Mapping::Cartoon)).unwrap();
        assert_eq!((again.written, again.already_present), (0, 18));
        // The same seed gives the same files in a fresh folder.
        let out2 = tmp.path().join("data2");
        write_photoset(&spec(&input, &out2, Mapping::Cartoon)).unwrap();
        assert_eq!(read(&out2, "trainB"), b);
    }

    #[test]
    fn bad_specs_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("photos");
        std::fs::create_dir_all(&input).unwrap();
        photos(&input);
        let out = tmp.path().join("data");
        let mut s = spec(&input, &out, Mapping::Warm);
        s.holdout = vec!["nope.png".into()];
        let err = write_photoset(&s).unwrap_err().to_string();
        assert!(err.contains("nope.png"), "{err}");
        s.holdout = vec![];
        assert!(matches!(write_photoset(&s), Err(PhotoSetError::NoHoldout)));
        s.holdout = vec!["one.png".into(), "two.png".into(), "three.png".into()];
        assert!(matches!(
            write_photoset(&s),
            Err(PhotoSetError::NoTrainingPhotos(_))
        ));
        s.holdout = vec!["broken.jpg".into()];
        assert!(matches!(
            write_photoset(&s),
            Err(PhotoSetError::UnknownHoldout(_))
        ));
    }
}
