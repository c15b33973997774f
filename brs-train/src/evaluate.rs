//! Scoring a translation against a known answer (`brs-train evaluate`). Where the true mapping is
//! known (a rendering of photos, a colour grade), held-out pairs of an input and the image its
//! translation should be tell how much of the mapping a model learned: the translation's mean L1
//! error against the target, next to the identity's (the input itself, what a model that only
//! copies scores). Their ratio is 0 for a perfect translation and 1 for no better than a copy.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::{Kind, Tensor};

use crate::data::{files_in, resize, to_batch};
use crate::error::{Result, TrainError};

/// Inputs and their targets, resized to the model's size, in file-name order.
#[derive(Debug)]
pub struct Pairs {
    /// File names (the same in both folders).
    pub names: Vec<String>,
    /// [N, 3, S, S] in [-1, 1].
    pub inputs: Tensor,
    pub targets: Tensor,
    /// Inputs left out (unreadable, or without a readable target), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// The images of `inputs` and the files of the same name in `targets`, both resized to
/// `size` x `size`. Inputs without a usable target are skipped and listed; no pair at all is an
/// error.
pub fn load_pairs(inputs: &Path, targets: &Path, size: u32) -> Result<Pairs> {
    let files = files_in(inputs).map_err(|e| TrainError::Data {
        path: inputs.to_path_buf(),
        reason: format!("cannot read the image folder: {e}"),
    })?;
    let limits = brs_image::decode::DecodeLimits::default();
    let (mut names, mut xs, mut ys, mut skipped) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = targets.join(&name);
        let decode = |p: &Path| brs_image::decode::decode_file(p, &limits);
        match (decode(&path), decode(&target)) {
            (Ok(x), Ok(y)) => {
                names.push(name);
                xs.push(resize(&x, size));
                ys.push(resize(&y, size));
            }
            (Err(e), _) => skipped.push((path, e.to_string())),
            (_, Err(e)) => skipped.push((path, format!("target {}: {e}", target.display()))),
        }
    }
    if names.is_empty() {
        return Err(TrainError::Data {
            path: inputs.to_path_buf(),
            reason: format!(
                "no input with a readable target of the same name in {} ({} skipped)",
                targets.display(),
                skipped.len()
            ),
        });
    }
    Ok(Pairs {
        names,
        inputs: to_batch(&xs.iter().collect::<Vec<_>>()),
        targets: to_batch(&ys.iter().collect::<Vec<_>>()),
        skipped,
    })
}

/// A translation's error against known targets, next to the identity's.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub pairs: usize,
    /// Mean absolute difference between translation and target, in [-1, 1] units (0 is exact).
    pub translation_error: f64,
    /// The same between the input itself and the target.
    pub identity_error: f64,
    /// translation_error / identity_error: below 1, the model learned part of the mapping.
    pub ratio: f64,
    pub skipped: Vec<(PathBuf, String)>,
}

/// Mean over images of each image's mean absolute difference, [N, C, H, W] both.
pub fn mean_l1(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .abs()
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[])
}

/// Scores `translate` (a batch in, its translation out, both [N, 3, S, S] in [-1, 1]) on
/// `pairs`, `batch` images at a time.
pub fn score(
    pairs: &Pairs,
    batch: usize,
    mut translate: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Evaluation> {
    if batch == 0 || batch > 1024 {
        return Err(TrainError::Batch(batch));
    }
    let n = pairs.names.len() as i64;
    let mut outputs = Vec::new();
    let mut start = 0;
    while start < n {
        let len = (batch as i64).min(n - start);
        let y = tch::no_grad(|| translate(&pairs.inputs.narrow(0, start, len)))?;
        outputs.push(y.to_device(tch::Device::Cpu).to_kind(Kind::Float));
        start += len;
    }
    let translated = Tensor::cat(&outputs, 0);
    let translation_error = mean_l1(&translated, &pairs.targets);
    let identity_error = mean_l1(&pairs.inputs, &pairs.targets);
    Ok(Evaluation {
        pairs: pairs.names.len(),
        translation_error,
        identity_error,
        ratio: if identity_error > 0.0 {
            translation_error / identity_error
        } else {
            f64::INFINITY
        },
        skipped: pairs.skipped.clone(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn save(dir: &Path, name: &str, v: u8) {
        std::fs::create_dir_all(dir).unwrap();
        RgbImage::from_pixel(8, 8, Rgb([v, v, v]))
            .save(dir.join(name))
            .unwrap();
    }

    #[test]
    fn pairs_by_name_and_scores_against_the_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        // Inputs at 0 (-1 in tensor units), targets at 255 (+1): the identity is 2 away.
        save(&a, "one.png", 0);
        save(&a, "two.png", 0);
        save(&a, "lonely.png", 0);
        save(&b, "one.png", 255);
        save(&b, "two.png", 255);
        std::fs::write(a.join("bad.png"), b"nope").unwrap();
        let pairs = load_pairs(&a, &b, 4).unwrap();
        assert_eq!(pairs.names, ["one.png", "two.png"]);
        assert_eq!(pairs.inputs.size(), [2, 3, 4, 4]);
        let skipped: Vec<_> = pairs
            .skipped
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(skipped, ["bad.png", "lonely.png"]);

        // A translation halfway to the target (0 in tensor units) scores 1, half the identity.
        let e = score(&pairs, 1, |x| Ok(x.zeros_like())).unwrap();
        assert_eq!(e.pairs, 2);
        assert!((e.identity_error - 2.0).abs() < 1e-6, "{e:?}");
        assert!((e.translation_error - 1.0).abs() < 1e-6, "{e:?}");
        assert!((e.ratio - 0.5).abs() < 1e-6, "{e:?}");
        // The exact answer scores 0, whatever the batch size.
        let exact = score(&pairs, 3, |x| Ok(x.ones_like())).unwrap();
        assert!(exact.translation_error < 1e-6 && exact.ratio < 1e-6);
        assert!(matches!(
            score(&pairs, 0, |x| Ok(x.shallow_clone())),
            Err(TrainError::Batch(0))
        ));

        let err = load_pairs(&a, &tmp.path().join("none"), 4)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no input with a readable target"), "{err}");
    }
}
