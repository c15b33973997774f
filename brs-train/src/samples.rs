//! Sample grids, what a user looks at during training: one PNG per direction, a row per test
//! image (input | attention heatmap | translation | cycle reconstruction).

use std::path::{Path, PathBuf};

use brs_model::{Generator, Networks};
use image::{Rgb, RgbImage};
use tch::Tensor;

use crate::error::{Result, TrainError};
use crate::png::write_png;

/// The folder of sample grids in a run directory.
pub(crate) const SAMPLES_DIR: &str = "samples";

/// One test image's row of a sample grid.
#[derive(Debug)]
pub(crate) struct SampleRow {
    pub(crate) input: RgbImage,
    pub(crate) heatmap: RgbImage,
    pub(crate) translation: RgbImage,
    pub(crate) cycle: RgbImage,
}

/// Rows of four equal squares side by side, separated by a 2-pixel white gap.
pub(crate) fn grid(rows: &[SampleRow]) -> RgbImage {
    let side = rows.first().map_or(1, |r| r.input.width());
    let gap = 2;
    let width = 4 * side + 3 * gap;
    let height = (rows.len() as u32 * (side + gap))
        .saturating_sub(gap)
        .max(1);
    let mut out = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in [&row.input, &row.heatmap, &row.translation, &row.cycle]
            .into_iter()
            .enumerate()
        {
            let x = c as i64 * i64::from(side + gap);
            let y = r as i64 * i64::from(side + gap);
            image::imageops::overlay(&mut out, img, x, y);
        }
    }
    out
}

/// Writes the grids of iteration `iteration` into `dir` (`A2B_NNNNNNN.png`, `B2A_...`): the
/// test batches `tests` (A, B) through both generators, without autograd. `input` moves a batch
/// where the networks are; `img_size` scales the heatmaps.
pub(crate) fn write_grids(
    dir: &Path,
    iteration: u64,
    nets: &Networks,
    tests: &[Tensor; 2],
    img_size: i64,
    input: impl Fn(Tensor) -> Tensor,
) -> Result<[PathBuf; 2]> {
    let _guard = tch::no_grad_guard();
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let grid = |name: &str, test: &Tensor, forward: &Generator, back: &Generator| {
        let mut rows = Vec::new();
        for chunk in test.split(4, 0) {
            let x = input(chunk);
            let o = forward.forward(&x);
            let cycle = back.forward(&o.image).image;
            for k in 0..x.size()[0] {
                rows.push(SampleRow {
                    input: brs_model::image::tensor_to_rgb(&x.get(k))?,
                    heatmap: brs_model::image::heatmap_to_rgb(&o.heatmap.get(k), img_size)?,
                    translation: brs_model::image::tensor_to_rgb(&o.image.get(k))?,
                    cycle: brs_model::image::tensor_to_rgb(&cycle.get(k))?,
                });
            }
        }
        let path = dir.join(format!("{name}_{iteration:07}.png"));
        write_png(&path, &grid(&rows))?;
        Ok::<_, TrainError>(path)
    };
    Ok([
        grid("A2B", &tests[0], &nets.gen_a2b, &nets.gen_b2a)?,
        grid("B2A", &tests[1], &nets.gen_b2a, &nets.gen_a2b)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_four_columns_per_row() {
        let sq = |v: u8| RgbImage::from_pixel(8, 8, Rgb([v, v, v]));
        let rows: Vec<SampleRow> = (0..3)
            .map(|_| SampleRow {
                input: sq(10),
                heatmap: sq(20),
                translation: sq(30),
                cycle: sq(40),
            })
            .collect();
        let g = grid(&rows);
        assert_eq!(g.dimensions(), (4 * 8 + 6, 3 * 8 + 4));
        assert_eq!(g.get_pixel(0, 0)[0], 10);
        assert_eq!(g.get_pixel(10, 0)[0], 20);
        assert_eq!(g.get_pixel(37, 27)[0], 40);
        assert_eq!(g.get_pixel(8, 0)[0], 255);
    }
}
