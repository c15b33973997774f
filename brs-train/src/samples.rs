//! What a user looks at during training: PNG sample grids (input | attention heatmap |
//! translation | cycle reconstruction per test image), the loss-curve PNG and metrics.jsonl.
//!
//! The plot is drawn with plotters' bitmap backend and labelled with a 3x5 pixel font of our
//! own (below), so no font file has to exist on the machine.

use std::fs;
use std::io::Write;
use std::path::Path;

use image::{Rgb, RgbImage};
use plotters::prelude::*;

use crate::error::{Result, TrainError};
use crate::trainer::MetricsLine;

/// The metrics log in a run directory (one JSON object per logged iteration).
pub(crate) const METRICS_FILE: &str = "metrics.jsonl";
/// The loss-curve plot in a run directory.
pub(crate) const PLOT_FILE: &str = "losses.png";

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

/// Writes a PNG through a temp file and a rename, so no reader sees half a file.
pub(crate) fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|cause| TrainError::Png {
        path: path.to_path_buf(),
        cause,
    })?;
    write_atomic(path, &bytes)
}

/// Writes bytes to a hidden temp file beside `path`, then renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(TrainError::io(path, e));
    }
    Ok(())
}

/// Reads metrics.jsonl up to and including `upto` (a resumed run drops what a killed run logged
/// after its last checkpoint). A missing file is an empty history.
pub(crate) fn read_metrics(path: &Path, upto: u64) -> Result<Vec<MetricsLine>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::io(path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<MetricsLine>(l).ok())
        .filter(|m| m.iteration <= upto)
        .collect())
}

/// Rewrites metrics.jsonl with exactly `lines`.
pub(crate) fn write_metrics(path: &Path, lines: &[MetricsLine]) -> Result<()> {
    let mut text = String::new();
    for line in lines {
        let json = serde_json::to_string(line)
            .map_err(|cause| TrainError::Serialise {
                what: "metrics",
                cause,
            })?;
        text.push_str(&json);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One panel per loss (2 rows x 3), each titled with its name and its y range.
pub(crate) fn loss_plot(path: &Path, history: &[MetricsLine]) -> Result<()> {
    let (w, h) = (960u32, 540u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let names: Vec<&str> = crate::losses::Losses::default()
        .series()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    let mut labels = Vec::new();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let panels = root.split_evenly((2, 3));
        let plot_err = TrainError::Plot;
        for (i, panel) in panels.iter().enumerate() {
            let points: Vec<(f64, f64)> = history
                .iter()
                .map(|m| (m.iteration as f64, m.losses.series()[i].1))
                .filter(|(_, y)| y.is_finite())
                .collect();
            let x0 = points.first().map_or(0.0, |p| p.0);
            let x1 = points.last().map_or(1.0, |p| p.0).max(x0 + 1.0);
            let y0 = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let y1 = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            let (y0, y1) = if y0.is_finite() {
                (y0, y1.max(y0 + 1e-9))
            } else {
                (0.0, 1.0)
            };
            let (px, py) = panel.get_base_pixel();
            labels.push((px as u32 + 8, py as u32 + 6, names[i].to_string(), i));
            labels.push((px as u32 + 8, py as u32 + 20, format!("max {y1:.4}"), 6));
            labels.push((px as u32 + 8, py as u32 + 252, format!("min {y0:.4}"), 6));
            labels.push((
                px as u32 + 150,
                py as u32 + 252,
                format!("it {} - {}", x0 as u64, x1 as u64),
                6,
            ));
            let mut chart = ChartBuilder::on(panel)
                .margin_top(34)
                .margin_bottom(22)
                .margin_left(8)
                .margin_right(8)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| plot_err(e.to_string()))?;
            chart
                .plotting_area()
                .fill(&RGBColor(248, 248, 248))
                .map_err(|e| plot_err(e.to_string()))?;
            chart
                .draw_series(LineSeries::new(points, COLOURS[i].stroke_width(2)))
                .map_err(|e| plot_err(e.to_string()))?;
        }
        root.present().map_err(|e| plot_err(e.to_string()))?;
    }
    let mut img = RgbImage::from_raw(w, h, buf)
        .ok_or_else(|| TrainError::Plot("the bitmap has the wrong size".into()))?;
    for (x, y, text, colour) in labels {
        let c = COLOURS
            .get(colour)
            .map_or([60, 60, 60], |c| [c.0, c.1, c.2]);
        draw_text(&mut img, x, y, &text, Rgb(c), 2);
    }
    write_png(path, &img)
}

/// 3x5 glyphs, one string of 15 cells per character (rows top to bottom, '#' = ink).
fn glyph(c: char) -> &'static str {
    match c.to_ascii_uppercase() {
        'A' => "####.#####.##.#",
        'B' => "##.#.###.#.###.",
        'C' => "####..#..#..###",
        'D' => "##.#.##.##.###.",
        'E' => "####..##.#..###",
        'F' => "####..##.#..#..",
        'G' => "####..#.##.####",
        'H' => "#.##.#####.##.#",
        'I' => "###.#..#..#.###",
        'K' => "#.##.###.#.##.#",
        'L' => "#..#..#..#..###",
        'M' => "#.########.##.#",
        'N' => "##.#.##.##.##.#",
        'O' => "####.##.##.####",
        'P' => "####.#####..#..",
        'R' => "##.#.###.#.##.#",
        'S' => "####..###..####",
        'T' => "###.#..#..#..#.",
        'U' => "#.##.##.##.####",
        'V' => "#.##.##.##.#.#.",
        'W' => "#.##.########.#",
        'X' => "#.##.#.#.#.##.#",
        'Y' => "#.##.#.#..#..#.",
        '0' => "####.##.##.####",
        '1' => ".#.##..#..#.###",
        '2' => "###..#####..###",
        '3' => "###..####..####",
        '4' => "#.##.####..#..#",
        '5' => "####..###..####",
        '6' => "####..####.####",
        '7' => "###..#..#..#..#",
        '8' => "####.#####.####",
        '9' => "####.####..####",
        '_' => "............###",
        '.' => ".............#.",
        '-' => "......###......",
        '+' => "....#.###.#....",
        ' ' => "...............",
        _ => "####.##.##.####",
    }
}

/// Draws `text` with the pixel font at (x, y), each cell `scale` pixels square.
pub(crate) fn draw_text(
    img: &mut RgbImage,
    x: u32,
    y: u32,
    text: &str,
    colour: Rgb<u8>,
    scale: u32,
) {
    for (i, c) in text.chars().enumerate() {
        let cells = glyph(c).as_bytes();
        let gx = x + i as u32 * 4 * scale;
        for (k, &cell) in cells.iter().enumerate().take(15) {
            if cell != b'#' {
                continue;
            }
            let (cx, cy) = (k as u32 % 3, k as u32 / 3);
            for dy in 0..scale {
                for dx in 0..scale {
                    let (px, py) = (gx + cx * scale + dx, y + cy * scale + dy);
                    if px < img.width() && py < img.height() {
                        img.put_pixel(px, py, colour);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::losses::Losses;

    #[test]
    fn every_glyph_has_fifteen_cells() {
        for c in "abcdefghiklmnoprstuvwxy0123456789_.-+ ?".chars() {
            assert_eq!(glyph(c).len(), 15, "{c:?}");
        }
    }

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

    #[test]
    fn plot_and_metrics_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let history: Vec<MetricsLine> = (1..=20)
            .map(|i| MetricsLine {
                iteration: i,
                lr: 1e-4,
                sec_per_it: 0.5,
                losses: Losses {
                    d_loss: 1.0 / i as f64,
                    g_loss: 2.0,
                    g_adv: 0.5,
                    g_cycle: 1.5 - i as f64 * 0.01,
                    g_identity: 0.3,
                    g_cam: f64::NAN,
                },
            })
            .collect();
        let plot = dir.path().join(PLOT_FILE);
        loss_plot(&plot, &history).unwrap();
        let img = image::open(&plot).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (960, 540));
        // The d_loss line is drawn in its colour somewhere in the first panel.
        let red = img
            .enumerate_pixels()
            .filter(|(x, y, p)| *x < 320 && *y < 270 && p.0 == [214, 39, 40])
            .count();
        assert!(red > 100, "{red}");

        let metrics = dir.path().join(METRICS_FILE);
        let finite: Vec<MetricsLine> = history
            .iter()
            .cloned()
            .map(|mut m| {
                m.losses.g_cam = 7.0;
                m
            })
            .collect();
        write_metrics(&metrics, &finite).unwrap();
        let back = read_metrics(&metrics, 12).unwrap();
        assert_eq!(back.len(), 12);
        assert_eq!(back[11].iteration, 12);
        assert_eq!(back[11].losses.g_cam, 7.0);
    }
}
