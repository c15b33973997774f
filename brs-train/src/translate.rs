//! Offline inference (`brs-train translate`): a file or folder of images through one generator
//! (run by libtorch or ONNX Runtime, brs-engine), one PNG per input named after it, unreadable
//! inputs skipped and counted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use brs_engine::Engine;

use crate::data::{files_in, resize, to_batch};
use crate::error::{Result, TrainError};
use crate::png::write_png;

/// What `translate` did.
#[derive(Debug, Default)]
pub struct TranslateSummary {
    pub written: Vec<PathBuf>,
    /// Inputs that could not be decoded, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// The files to translate: `input` itself, or the non-hidden files of the folder, sorted.
fn inputs(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    files_in(input).map_err(|e| TrainError::Data {
        path: input.to_path_buf(),
        reason: format!("not an image file or a readable folder: {e}"),
    })
}

/// `photo.jpg` -> `photo.png`; when two inputs share a stem, the later keeps its full name
/// (`photo.jpeg.png`) so no output overwrites another.
fn output_name(path: &Path, taken: &mut BTreeSet<String>) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let mut name = format!("{stem}.png");
    if taken.contains(&name) {
        let full = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        name = format!("{full}.png");
    }
    taken.insert(name.clone());
    name
}

/// Translates `input` (file or folder) into PNGs in `output` with `translator`, `batch` images
/// at a time; `progress(done, total)` hears how many inputs are done after each batch.
pub fn translate(
    translator: &Engine,
    input: &Path,
    output: &Path,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TranslateSummary> {
    if batch == 0 || batch > 1024 {
        return Err(TrainError::Batch(batch));
    }
    let size = translator.config().img_size as u32;
    let files = inputs(input)?;
    std::fs::create_dir_all(output).map_err(|e| TrainError::io(output, e))?;
    let limits = brs_image::decode::DecodeLimits::default();
    let mut summary = TranslateSummary::default();
    let mut taken = BTreeSet::new();
    let mut done = 0;
    for chunk in files.chunks(batch) {
        let mut images = Vec::new();
        let mut names = Vec::new();
        for path in chunk {
            match brs_image::decode::decode_file(path, &limits) {
                Ok(img) => {
                    images.push(resize(&img, size));
                    names.push(output_name(path, &mut taken));
                }
                Err(e) => summary.skipped.push((path.clone(), e.to_string())),
            }
        }
        if !images.is_empty() {
            let x = to_batch(&images.iter().collect::<Vec<_>>());
            let y = translator.translate(&x)?;
            for (k, name) in names.iter().enumerate() {
                let img = brs_model::image::tensor_to_rgb(&y.get(k as i64))?;
                let path = output.join(name);
                write_png(&path, &img)?;
                summary.written.push(path);
            }
        }
        done += chunk.len();
        progress(done, files.len());
    }
    Ok(summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn output_names_keep_the_stem_and_never_collide() {
        let mut taken = BTreeSet::new();
        assert_eq!(
            output_name(Path::new("/x/photo.jpg"), &mut taken),
            "photo.png"
        );
        assert_eq!(
            output_name(Path::new("/y/photo.jpeg"), &mut taken),
            "photo.jpeg.png"
        );
        assert_eq!(output_name(Path::new("cat.png"), &mut taken), "cat.png");
    }
}
