//! Splits a folder of crops into trainX/testX (X = A or B) with a seeded shuffle.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use brs_image::decode::sniff;
use brs_image::files::{list_files, write_atomic};
use crate::run::RunError;

/// What `split` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SplitSummary {
    pub images: usize,
    pub train: usize,
    pub test: usize,
    /// Already present in the destination with the same size (left alone).
    pub already_present: usize,
    /// Files in the input that are not images (by magic bytes), left out.
    pub not_images: usize,
}

/// Copies the images of `input` (top level only) into `output/train{domain}` and
/// `output/test{domain}`. The same files, seed and fraction always give the same split.
pub fn split(
    input: &Path,
    output: &Path,
    domain: &str,
    test_fraction: f64,
    seed: u64,
) -> Result<SplitSummary, RunError> {
    if !(0.0..=1.0).contains(&test_fraction) {
        return Err(RunError::Setup(format!(
            "test fraction {test_fraction} is not between 0 and 1"
        )));
    }
    if !input.is_dir() {
        return Err(RunError::Setup(format!(
            "input {} is not a directory",
            input.display()
        )));
    }
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |cause| RunError::Io { path: p, cause }
    };
    let mut summary = SplitSummary::default();
    let mut images: Vec<PathBuf> = Vec::new();
    for rel in list_files(input, Some(output)).map_err(io(input))? {
        if rel.components().count() != 1 {
            continue;
        }
        let mut head = [0u8; 32];
        let n = std::fs::File::open(input.join(&rel))
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .map_err(io(&input.join(&rel)))?;
        if sniff(&head[..n]).is_some() {
            images.push(rel);
        } else {
            summary.not_images += 1;
        }
    }
    images.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_test = (images.len() as f64 * test_fraction).round() as usize;
    summary.images = images.len();
    for (i, rel) in images.iter().enumerate() {
        let part = if i < n_test { "test" } else { "train" };
        let dir = output.join(format!("{part}{domain}"));
        let dst = dir.join(rel);
        let src = input.join(rel);
        if i < n_test {
            summary.test += 1;
        } else {
            summary.train += 1;
        }
        let same = match (std::fs::metadata(&dst), std::fs::metadata(&src)) {
            (Ok(a), Ok(b)) => a.len() == b.len(),
            _ => false,
        };
        if same {
            summary.already_present += 1;
            continue;
        }
        let bytes = std::fs::read(&src).map_err(io(&src))?;
        write_atomic(&dst, &bytes).map_err(io(&dst))?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_and_complete() {
        let dir = tempfile::tempdir().expect("tmp");
        let input = dir.path().join("crops");
        std::fs::create_dir_all(&input).expect("mkdir");
        for i in 0..20 {
            let png = brs_image::files::png_bytes(&crate::synth::scene(i, 0, 8)).expect("png");
            std::fs::write(input.join(format!("{i:02}.png")), png).expect("write");
        }
        std::fs::write(input.join("notes.txt"), "not an image").expect("write");
        let out = dir.path().join("data");
        let s = split(&input, &out, "A", 0.25, 7).expect("split");
        assert_eq!((s.images, s.train, s.test, s.not_images), (20, 15, 5, 1));
        let names = |d: &str| {
            let mut v: Vec<String> = std::fs::read_dir(out.join(d))
                .expect("dir")
                .map(|e| e.expect("e").file_name().to_string_lossy().into())
                .collect();
            v.sort();
            v
        };
        let test1 = names("testA");
        assert_eq!(test1.len(), 5);
        assert_eq!(names("trainA").len(), 15);
        let again = split(&input, &out, "A", 0.25, 7).expect("split");
        assert_eq!(again.already_present, 20);
        let out2 = dir.path().join("data2");
        split(&input, &out2, "A", 0.25, 8).expect("split");
        let other: Vec<String> = {
            let mut v: Vec<String> = std::fs::read_dir(out2.join("testA"))
                .expect("dir")
                .map(|e| e.expect("e").file_name().to_string_lossy().into())
                .collect();
            v.sort();
            v
        };
        assert_ne!(test1, other, "another seed should give another split");
    }
}
