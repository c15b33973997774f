//! losses.png: one panel per loss (2 rows x 3), drawn with plotters' bitmap backend and
//! labelled with our pixel font.

use std::path::Path;

use image::{Rgb, RgbImage};
use plotters::prelude::*;

use crate::error::{Result, TrainError};
use crate::font::draw_text;
use crate::metrics::MetricsLine;
use crate::png::write_png;

/// The loss-curve plot in a run directory.
pub(crate) const PLOT_FILE: &str = "losses.png";

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::losses::Losses;

    #[test]
    fn every_loss_gets_a_panel_and_non_finite_values_are_left_out() {
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
    }
}
