//! The unpaired image folders (DIR/trainA, trainB, testA, testB) and the reference's
//! augmentation: random horizontal flip, resize to img+30, random crop of img; test images are
//! resized to img. All randomness comes from one ChaCha20 stream whose position is saved with
//! every checkpoint, so a resumed run draws exactly the batches a straight run would.
//!
//! Images are decoded once (in parallel) and kept resized to img+30 in memory: resizing commutes
//! with the flip, so only the flip and the crop remain per sample, which costs microseconds
//! instead of a decode per iteration. Memory: 3 x (img+30)^2 bytes per image (about 245 KB at
//! 256, 0.8 GB for selfie2anime's 3,400 per domain).

use std::path::{Path, PathBuf};

use image::RgbImage;
use image::imageops::FilterType;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::events::Notice;

/// Extra pixels of the training resize before the random crop, as in the reference.
pub(crate) const CROP_MARGIN: u32 = 30;

/// The four folders of a dataset in the layout of selfie2anime and the reference.
const FOLDERS: [&str; 4] = ["trainA", "trainB", "testA", "testB"];

/// One folder's usable images, and what was skipped.
#[derive(Debug)]
pub(crate) struct Domain {
    pub(crate) dir: PathBuf,
    pub(crate) images: Vec<RgbImage>,
    /// Files that could not be decoded, with the reason.
    pub(crate) skipped: Vec<(PathBuf, String)>,
}

/// The files directly in `dir` (not in subfolders), hidden ones left out, sorted by name.
pub(crate) fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Decodes every file of `dir` (`files_in`) and resizes it to `side` x `side`, keeping at most
/// `limit` images. Unreadable files are skipped and listed; a missing folder or one without a
/// single usable image is an error.
pub(crate) fn load_domain(dir: &Path, side: u32, limit: Option<usize>) -> Result<Domain> {
    let files = files_in(dir).map_err(|e| TrainError::Data {
        path: dir.to_path_buf(),
        reason: format!("cannot read the image folder: {e}"),
    })?;
    let limits = brs_image::decode::DecodeLimits::default();
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    // Decode in chunks so a `limit` of 5 test images does not decode a whole folder.
    let want = limit.unwrap_or(usize::MAX);
    for chunk in files.chunks(64) {
        if images.len() >= want {
            break;
        }
        let decoded: Vec<_> = chunk
            .par_iter()
            .map(|path| {
                brs_image::decode::decode_file(path, &limits)
                    .map(|img| resize(&img, side))
                    .map_err(|e| e.to_string())
            })
            .collect();
        for (path, result) in chunk.iter().zip(decoded) {
            match result {
                Ok(img) if images.len() < want => images.push(img),
                Ok(_) => {}
                Err(reason) => skipped.push((path.clone(), reason)),
            }
        }
    }
    if images.is_empty() {
        return Err(TrainError::Data {
            path: dir.to_path_buf(),
            reason: format!(
                "no usable images ({} files, {} unreadable)",
                files.len(),
                skipped.len()
            ),
        });
    }
    Ok(Domain {
        dir: dir.to_path_buf(),
        images,
        skipped,
    })
}

/// A dataset root loaded for training: the loader over trainA and trainB, and the first
/// `sample_count` images of testA and testB as batches for the sample grids.
pub(crate) struct Dataset {
    pub(crate) loader: Loader,
    pub(crate) tests: [Tensor; 2],
}

/// Loads the four folders of `root` for `cfg` (training images at img_size + CROP_MARGIN, test
/// images at img_size), with a notice per folder saying what was read and skipped.
pub(crate) fn load_dataset(
    root: &Path,
    cfg: &TrainConfig,
    notices: &mut Vec<Notice>,
) -> Result<Dataset> {
    let img = cfg.img_size as u32;
    let mut load = |folder: &str, side: u32, limit: Option<usize>| -> Result<Domain> {
        let domain = load_domain(&root.join(folder), side, limit)?;
        notices.push(Notice::Domain {
            folder: folder.to_string(),
            dir: domain.dir.clone(),
            images: domain.images.len(),
            skipped: domain.skipped.clone(),
        });
        Ok(domain)
    };
    let [train_a, train_b, test_a, test_b] = FOLDERS;
    let train_a = load(train_a, img + CROP_MARGIN, None)?;
    let train_b = load(train_b, img + CROP_MARGIN, None)?;
    let test_a = load(test_a, img, Some(cfg.sample_count))?;
    let test_b = load(test_b, img, Some(cfg.sample_count))?;
    let batch = |d: &Domain| to_batch(&d.images.iter().collect::<Vec<_>>());
    Ok(Dataset {
        tests: [batch(&test_a), batch(&test_b)],
        loader: Loader::new([train_a, train_b], img, cfg.batch_size, cfg.seed),
    })
}

/// Bilinear resize with antialiasing when shrinking, like torchvision's Resize on PIL images.
pub(crate) fn resize(img: &RgbImage, side: u32) -> RgbImage {
    if img.dimensions() == (side, side) {
        return img.clone();
    }
    image::imageops::resize(img, side, side, FilterType::Triangle)
}

/// Stacks images as a [N, 3, S, S] float batch in [-1, 1].
pub(crate) fn to_batch(images: &[&RgbImage]) -> Tensor {
    let tensors: Vec<Tensor> = images
        .iter()
        .map(|img| brs_model::image::rgb_to_tensor(img))
        .collect();
    Tensor::stack(&tensors, 0)
}

/// Where the loader is in the data stream: all a resumed run needs to continue it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoaderState {
    pub(crate) seed: u64,
    /// ChaCha20 word position (a u128, as a decimal string: JSON numbers stop at 2^53).
    pub(crate) word_pos: String,
    /// Per domain (A, B): this epoch's order and how far into it we are.
    pub(crate) order: [Vec<u32>; 2],
    pub(crate) pos: [usize; 2],
    /// Image counts when saved, to refuse a resume on a dataset that changed.
    pub(crate) counts: [usize; 2],
}

/// Draws augmented batches from the two training domains, reshuffling each domain every epoch
/// (a final partial batch is kept, as PyTorch's DataLoader does by default).
#[derive(Debug)]
pub(crate) struct Loader {
    domains: [Domain; 2],
    img_size: u32,
    batch_size: usize,
    rng: ChaCha20Rng,
    seed: u64,
    order: [Vec<u32>; 2],
    pos: [usize; 2],
}

impl Loader {
    /// `domains` hold images resized to img_size + CROP_MARGIN.
    pub(crate) fn new(domains: [Domain; 2], img_size: u32, batch_size: usize, seed: u64) -> Self {
        Loader {
            domains,
            img_size,
            batch_size,
            rng: ChaCha20Rng::seed_from_u64(seed),
            seed,
            order: [Vec::new(), Vec::new()],
            pos: [0, 0],
        }
    }

    /// The next batch of domain `d` (0 = A, 1 = B) as [N, 3, img, img] in [-1, 1].
    pub(crate) fn next_batch(&mut self, d: usize) -> Tensor {
        let count = self.domains[d].images.len();
        if self.pos[d] >= self.order[d].len() {
            let mut order: Vec<u32> = (0..count as u32).collect();
            order.shuffle(&mut self.rng);
            self.order[d] = order;
            self.pos[d] = 0;
        }
        let end = (self.pos[d] + self.batch_size).min(self.order[d].len());
        let picks: Vec<u32> = self.order[d][self.pos[d]..end].to_vec();
        self.pos[d] = end;
        let s = self.img_size as usize;
        let mut data = vec![0f32; picks.len() * 3 * s * s];
        for (k, &i) in picks.iter().enumerate() {
            // The reference flips first, then resizes, then crops; resize is done already.
            let flip = self.rng.random_bool(0.5);
            let top = self.rng.random_range(0..=CROP_MARGIN) as usize;
            let left = self.rng.random_range(0..=CROP_MARGIN) as usize;
            let img = &self.domains[d].images[i as usize];
            let w = img.width() as usize;
            let raw = img.as_raw();
            let out = &mut data[k * 3 * s * s..(k + 1) * 3 * s * s];
            for y in 0..s {
                for x in 0..s {
                    let sx = if flip { w - 1 - (left + x) } else { left + x };
                    let p = ((top + y) * w + sx) * 3;
                    for c in 0..3 {
                        out[c * s * s + y * s + x] = f32::from(raw[p + c]) / 127.5 - 1.0;
                    }
                }
            }
        }
        Tensor::from_slice(&data)
            .view([picks.len() as i64, 3, s as i64, s as i64])
            .to_kind(Kind::Float)
    }

    pub(crate) fn state(&self) -> LoaderState {
        LoaderState {
            seed: self.seed,
            word_pos: self.rng.get_word_pos().to_string(),
            order: self.order.clone(),
            pos: self.pos,
            counts: [self.domains[0].images.len(), self.domains[1].images.len()],
        }
    }

    /// Continues from a saved state; the training folders must hold as many images as then.
    pub(crate) fn restore(&mut self, state: &LoaderState) -> Result<()> {
        let counts = [self.domains[0].images.len(), self.domains[1].images.len()];
        if counts != state.counts {
            return Err(TrainError::LoaderState(format!(
                "the training folders now hold {counts:?} usable images (A, B), the run was \
                 checkpointed with {:?}: resuming would not continue the same data stream",
                state.counts
            )));
        }
        let word_pos: u128 = state
            .word_pos
            .parse()
            .map_err(|_| TrainError::LoaderState(format!("bad word_pos {:?}", state.word_pos)))?;
        for ((order, &pos), &count) in state.order.iter().zip(&state.pos).zip(&counts) {
            if pos > order.len() || order.iter().any(|&i| i as usize >= count) {
                return Err(TrainError::LoaderState("image indices out of range".into()));
            }
        }
        self.rng = ChaCha20Rng::seed_from_u64(state.seed);
        self.rng.set_word_pos(word_pos);
        self.seed = state.seed;
        self.order = state.order.clone();
        self.pos = state.pos;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn domain(n: usize, side: u32) -> Domain {
        Domain {
            dir: PathBuf::from("mem"),
            images: (0..n)
                .map(|i| {
                    RgbImage::from_fn(side, side, |x, y| image::Rgb([x as u8, y as u8, i as u8]))
                })
                .collect(),
            skipped: Vec::new(),
        }
    }

    #[test]
    fn batches_are_flipped_crops_and_epochs_cover_every_image() {
        let mut loader = Loader::new([domain(5, 40), domain(3, 40)], 10, 2, 7);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let b = loader.next_batch(0);
            seen.push(b.size()[0]);
            // Channel 2 holds the image index; channel 0 holds x: a crop is 10 consecutive
            // columns, increasing or (flipped) decreasing.
            for k in 0..b.size()[0] {
                let row: Vec<f32> =
                    Vec::try_from(&((b.get(k).get(0).get(0) + 1.0) * 127.5)).unwrap_or_default();
                let steps: Vec<i32> = row
                    .windows(2)
                    .map(|w| (w[1] - w[0]).round() as i32)
                    .collect();
                assert!(
                    steps.iter().all(|&s| s == 1) || steps.iter().all(|&s| s == -1),
                    "{row:?}"
                );
                assert!(row.iter().all(|&x| (0.0..40.0).contains(&x)));
            }
        }
        // 5 images in batches of 2: 2, 2, then the partial 1, like DataLoader(drop_last=False).
        assert_eq!(seen, [2, 2, 1]);
    }

    #[test]
    fn restored_state_continues_the_same_stream() {
        let mut a = Loader::new([domain(5, 40), domain(3, 40)], 10, 2, 11);
        for _ in 0..3 {
            let _ = a.next_batch(0);
            let _ = a.next_batch(1);
        }
        let saved = serde_json::to_string(&a.state()).unwrap();
        let mut b = Loader::new([domain(5, 40), domain(3, 40)], 10, 2, 999);
        b.restore(&serde_json::from_str(&saved).unwrap()).unwrap();
        for _ in 0..4 {
            assert!(a.next_batch(0).equal(&b.next_batch(0)));
            assert!(a.next_batch(1).equal(&b.next_batch(1)));
        }
        let mut c = Loader::new([domain(6, 40), domain(3, 40)], 10, 2, 11);
        let err = c
            .restore(&serde_json::from_str(&saved).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("[6, 3]"), "{err}");
    }

    #[test]
    fn unreadable_files_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        RgbImage::new(20, 30)
            .save(dir.path().join("a.png"))
            .unwrap();
        std::fs::write(dir.path().join("b.jpg"), b"not an image").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"ignored").unwrap();
        let d = load_domain(dir.path(), 16, None).unwrap();
        assert_eq!(d.images.len(), 1);
        assert_eq!(d.images[0].dimensions(), (16, 16));
        assert_eq!(d.skipped.len(), 1);
        assert!(d.skipped[0].0.ends_with("b.jpg"));

        std::fs::remove_file(dir.path().join("a.png")).unwrap();
        let err = load_domain(dir.path(), 16, None).unwrap_err().to_string();
        assert!(
            err.contains("no usable images") && err.contains("1 unreadable"),
            "{err}"
        );
        let err = load_domain(&dir.path().join("missing"), 16, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing") && err.contains("cannot read"),
            "{err}"
        );
    }
}
