//! A 3x5 pixel font of our own for the labels of the loss plot, so no font file has to exist on
//! the machine.

use image::{Rgb, RgbImage};

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
mod tests {
    use super::*;

    #[test]
    fn every_glyph_has_fifteen_cells() {
        for c in "abcdefghiklmnoprstuvwxy0123456789_.-+ ?".chars() {
            assert_eq!(glyph(c).len(), 15, "{c:?}");
        }
    }

    #[test]
    fn text_is_drawn_in_cells_and_clipped_at_the_border() {
        let mut img = RgbImage::new(10, 12);
        // "1" at scale 2: its top row is ".#." so only the middle cell is inked.
        draw_text(&mut img, 0, 0, "1", Rgb([255, 0, 0]), 2);
        assert_eq!(img.get_pixel(2, 0).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        // A second character starts 4 cells on and runs off the 10-pixel edge without a panic.
        draw_text(&mut img, 0, 0, "88", Rgb([0, 255, 0]), 2);
        assert_eq!(img.get_pixel(8, 0).0, [0, 255, 0]);
    }
}
