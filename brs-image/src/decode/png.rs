//! PNG through the `png` crate directly, row by row: metadata chunks skipped, every allocation
//! under a limit from the first byte, and a box filter that shrinks while decoding so a reduced
//! decode never holds the full-size image.

use std::io::Cursor;

use ::png::{BitDepth, ColorType, Decoder, Limits, Transformations};
use image::RgbImage;
use image::metadata::Orientation;

use super::{DecodeError, DecodeLimits, exif_orientation, over_white, reduction};

fn decoder<'a>(bytes: &'a [u8], limits: &DecodeLimits) -> Decoder<Cursor<&'a [u8]>> {
    // The limit covers the decoder's own buffers (rows, metadata); our output is allocated by us.
    let mut d = Decoder::new_with_limits(
        Cursor::new(bytes),
        Limits {
            bytes: limits.decoder_bytes(),
        },
    );
    // A colour profile or a text chunk can inflate to hundreds of megabytes from a few kilobytes,
    // and brs uses neither.
    d.set_ignore_iccp_chunk(true);
    d.set_ignore_text_chunk(true);
    d.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    d
}

fn corrupt(e: ::png::DecodingError) -> DecodeError {
    match e {
        ::png::DecodingError::LimitsExceeded => {
            DecodeError::OverMemoryLimit("png decoder buffers".into())
        }
        ::png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("truncated".into())
        }
        other => DecodeError::Corrupt(other.to_string()),
    }
}

pub(super) fn dimensions(bytes: &[u8], limits: &DecodeLimits) -> Result<(u32, u32), DecodeError> {
    let mut d = decoder(bytes, limits);
    let info = d.read_header_info().map_err(corrupt)?;
    Ok((info.width, info.height))
}

/// Accumulates decoded pixels into boxes of `f` x `f` source pixels.
struct Shrink {
    width: u32,
    height: u32,
    f: u32,
    out: RgbImage,
    /// Per-channel sums of one band of `f` source rows (non-interlaced) or of the whole output
    /// (interlaced, whose passes visit rows out of order).
    sums: Vec<u32>,
    band_rows: u32,
}

impl Shrink {
    fn new(width: u32, height: u32, f: u32, interlaced: bool) -> Self {
        let (ow, oh) = (width.div_ceil(f), height.div_ceil(f));
        let sums = if f == 1 {
            Vec::new()
        } else if interlaced {
            vec![0; ow as usize * oh as usize * 3]
        } else {
            vec![0; ow as usize * 3]
        };
        Shrink {
            width,
            height,
            f,
            out: RgbImage::new(ow, oh),
            sums,
            band_rows: 0,
        }
    }

    /// Source pixels in a box (smaller at the right and bottom edges).
    fn count(&self, ox: u32, oy: u32) -> u32 {
        let bw = self.f.min(self.width - ox * self.f);
        let bh = self.f.min(self.height - oy * self.f);
        bw * bh
    }

    fn put(&mut self, x: u32, y: u32, rgb: [u8; 3], interlaced: bool) {
        if self.f == 1 {
            self.out.put_pixel(x, y, image::Rgb(rgb));
            return;
        }
        let ow = self.out.width() as usize;
        let ox = (x / self.f) as usize;
        let base = if interlaced {
            ((y / self.f) as usize * ow + ox) * 3
        } else {
            ox * 3
        };
        for c in 0..3 {
            self.sums[base + c] += u32::from(rgb[c]);
        }
    }

    /// Non-interlaced: called after each source row `y`; flushes a finished band.
    fn end_row(&mut self, y: u32) {
        if self.f == 1 {
            return;
        }
        self.band_rows += 1;
        if self.band_rows == self.f || y + 1 == self.height {
            let oy = y / self.f;
            for ox in 0..self.out.width() {
                let n = self.count(ox, oy);
                let px = self.out.get_pixel_mut(ox, oy);
                for c in 0..3 {
                    let s = &mut self.sums[ox as usize * 3 + c];
                    px.0[c] = ((*s + n / 2) / n) as u8;
                    *s = 0;
                }
            }
            self.band_rows = 0;
        }
    }

    fn finish(mut self, interlaced: bool) -> RgbImage {
        if self.f > 1 && interlaced {
            let ow = self.out.width();
            for oy in 0..self.out.height() {
                for ox in 0..ow {
                    let n = self.count(ox, oy);
                    let base = ((oy * ow + ox) * 3) as usize;
                    let px = self.out.get_pixel_mut(ox, oy);
                    for c in 0..3 {
                        px.0[c] = ((self.sums[base + c] + n / 2) / n) as u8;
                    }
                }
            }
        }
        self.out
    }
}

/// One decoded pixel of an 8-bit row in `color`, as RGB composited over white.
fn rgb_at(row: &[u8], i: usize, color: ColorType) -> [u8; 3] {
    match color {
        ColorType::Grayscale => [row[i]; 3],
        ColorType::GrayscaleAlpha => [over_white(row[2 * i], row[2 * i + 1]); 3],
        ColorType::Rgba => {
            let p = &row[4 * i..4 * i + 4];
            [
                over_white(p[0], p[3]),
                over_white(p[1], p[3]),
                over_white(p[2], p[3]),
            ]
        }
        // Rgb, and Indexed (expanded to Rgb/Rgba by EXPAND, so never seen here).
        _ => [row[3 * i], row[3 * i + 1], row[3 * i + 2]],
    }
}

pub(super) fn decode(
    bytes: &[u8],
    limits: &DecodeLimits,
    min_side: u32,
) -> Result<(RgbImage, Orientation), DecodeError> {
    let mut reader = decoder(bytes, limits).read_info().map_err(corrupt)?;
    let (width, height) = (reader.info().width, reader.info().height);
    let interlaced = reader.info().interlaced;
    let orientation = exif_orientation(reader.info().exif_metadata.as_deref());
    let (color, depth) = reader.output_color_type();
    if depth != BitDepth::Eight {
        return Err(DecodeError::Corrupt(format!(
            "unexpected output bit depth {depth:?}"
        )));
    }
    let f = reduction(width, height, min_side);
    let mut shrink = Shrink::new(width, height, f, interlaced);
    if interlaced {
        // Adam7: the png crate hands out the rows of its seven passes in order; which source row
        // and columns each holds follows from the pass geometry (empty passes are skipped, as the
        // format says).
        let mut rows = adam7_rows(width, height);
        while let Some(row) = reader.next_interlaced_row().map_err(corrupt)? {
            let Some((x0, step, y)) = rows.next() else {
                return Err(DecodeError::Corrupt("more rows than the header says".into()));
            };
            let data = row.data();
            let mut x = x0;
            let mut i = 0;
            while x < width {
                shrink.put(x, y, rgb_at(data, i, color), true);
                x += step;
                i += 1;
            }
        }
        if rows.next().is_some() {
            return Err(DecodeError::Corrupt("truncated".into()));
        }
    } else {
        let mut y = 0;
        while let Some(row) = reader.next_row().map_err(corrupt)? {
            if y >= height {
                return Err(DecodeError::Corrupt("more rows than the header says".into()));
            }
            let data = row.data();
            for x in 0..width {
                shrink.put(x, y, rgb_at(data, x as usize, color), false);
            }
            shrink.end_row(y);
            y += 1;
        }
        if y != height {
            return Err(DecodeError::Corrupt("truncated".into()));
        }
    }
    // Reads on to IEND: a file cut after its last row is still a cut file.
    reader.finish().map_err(corrupt)?;
    Ok((shrink.finish(interlaced), orientation))
}

/// (first column, column step, source row) of every row of an Adam7-interlaced image, in the
/// order the passes store them.
fn adam7_rows(width: u32, height: u32) -> impl Iterator<Item = (u32, u32, u32)> {
    const PASSES: [(u32, u32, u32, u32); 7] = [
        (0, 8, 0, 8),
        (4, 8, 0, 8),
        (0, 4, 4, 8),
        (2, 4, 0, 4),
        (0, 2, 2, 4),
        (1, 2, 0, 2),
        (0, 1, 1, 2),
    ];
    PASSES
        .into_iter()
        .filter(move |&(x0, _, y0, _)| x0 < width && y0 < height)
        .flat_map(move |(x0, xs, y0, ys)| (y0..height).step_by(ys as usize).map(move |y| (x0, xs, y)))
}
