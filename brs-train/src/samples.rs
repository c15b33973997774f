//! Sample grids, what a user looks at during training: one PNG per direction, a row per test
//! image (input | attention heatmap | translation | cycle reconstruction).

use image::{Rgb, RgbImage};

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
