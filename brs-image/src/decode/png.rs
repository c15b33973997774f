//! PNG through the `png` crate directly, row by row: metadata chunks never reach the decoder,
//! every allocation is under a limit from the first byte, and a box filter shrinks while decoding
//! so a reduced decode never holds the full-size image.

use std::io::{BufRead, Read, Seek, SeekFrom};

use ::png::{BitDepth, ColorType, Decoder, Limits, Transformations};
use image::RgbImage;
use image::metadata::Orientation;

use super::{DecodeError, DecodeLimits, exif, over_white, reduction};

/// Chunks brs has no use for that the png crate would hold in memory or inflate: the colour
/// profile, text, and EXIF (read in place for the orientation instead, see [`exif_block`]).
const METADATA: [&[u8; 4]; 5] = [b"iCCP", b"tEXt", b"zTXt", b"iTXt", b"eXIf"];

fn decoder<'a>(bytes: &'a [u8], limits: &DecodeLimits) -> Decoder<WithoutMetadata<'a>> {
    // The limit covers the decoder's own buffers (rows); our output is allocated by us.
    let mut d = Decoder::new_with_limits(
        WithoutMetadata::new(bytes),
        Limits {
            bytes: limits.decoder_bytes(),
        },
    );
    d.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    d
}

/// One chunk of a PNG: its type and where it ends (past its CRC), if its header is all there.
fn chunk_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(at..at.checked_add(8)?)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let end = at.saturating_add(12).saturating_add(len as usize);
    Some((&header[4..], end))
}

/// The PNG as the png crate reads it: the same bytes without the [`METADATA`] chunks.
///
/// The crate reads an eXIf chunk into memory whatever its options, growing a buffer by doubling
/// and then copying it into its `Info`: a 19 MiB chunk cost 51 MiB. Colour profiles and text it
/// skips when told to, which would leave us trusting every future version to skip them unread.
/// A chunk that is not in the stream costs nothing. Whole chunks go, so every CRC the crate checks
/// is still right. Chunks are found by walking their lengths from the signature, as the crate
/// does; a cut-off header and whatever follows are passed on as they are, for the crate to
/// report.
pub(super) struct WithoutMetadata<'a> {
    bytes: &'a [u8],
    /// Offset in `bytes` of the next byte to hand out.
    pos: usize,
    /// End of the run of kept bytes that `pos` is in (the next chunk to check starts there).
    run_end: usize,
    /// Bytes handed out so far: the position in the stream the crate sees.
    seen: u64,
}

impl<'a> WithoutMetadata<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            // The signature.
            run_end: bytes.len().min(8),
            seen: 0,
        }
    }

    /// Once a run is used up, steps over the metadata chunks that follow it.
    fn settle(&mut self) {
        let len = self.bytes.len();
        while self.pos == self.run_end && self.pos < len {
            match chunk_at(self.bytes, self.pos) {
                Some((kind, end)) if METADATA.iter().any(|m| m.as_slice() == kind) => {
                    self.pos = end.min(len);
                    self.run_end = self.pos;
                }
                Some((_, end)) => self.run_end = end.min(len),
                None => self.run_end = len,
            }
        }
    }

    /// The length of the stream the crate sees.
    fn visible_len(&self) -> u64 {
        let mut walk = Self::new(self.bytes);
        loop {
            walk.settle();
            let n = walk.run_end - walk.pos;
            if n == 0 {
                return walk.seen;
            }
            walk.consume(n);
        }
    }
}

impl BufRead for WithoutMetadata<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.settle();
        Ok(&self.bytes[self.pos..self.run_end])
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.run_end - self.pos);
        self.pos += amt;
        self.seen += amt as u64;
    }
}

impl Read for WithoutMetadata<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let run = self.fill_buf()?;
        let n = run.len().min(buf.len());
        buf[..n].copy_from_slice(&run[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The crate asks for `Seek` (and does not seek as of 0.18); positions are in the stream it sees.
/// Seeking past the end stops at the end.
impl Seek for WithoutMetadata<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.seen.checked_add_signed(d),
            SeekFrom::End(d) => self.visible_len().checked_add_signed(d),
        }
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the stream",
            )
        })?;
        if target < self.seen {
            *self = Self::new(self.bytes);
        }
        while self.seen < target {
            let n = self.fill_buf()?.len();
            if n == 0 {
                break;
            }
            self.consume(n.min(usize::try_from(target - self.seen).unwrap_or(usize::MAX)));
        }
        Ok(self.seen)
    }
}

/// The payload of the first eXIf chunk before the image data, if it is all there: the one the png
/// crate would have put in its `Info` (it skips a second eXIf as an error, and its `Info` is
/// taken before the image data). Unlike the crate, this does not check the chunk's CRC: at worst
/// a damaged block turns the picture wrongly.
pub(super) fn exif_block(bytes: &[u8]) -> Option<&[u8]> {
    let mut at = 8;
    while let Some((kind, end)) = chunk_at(bytes, at) {
        match kind {
            b"IDAT" | b"IEND" => return None,
            b"eXIf" => return bytes.get(at + 8..end - 4),
            _ => at = end,
        }
    }
    None
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
        for (sum, v) in self.sums[base..base + 3].iter_mut().zip(rgb) {
            *sum += u32::from(v);
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
    let orientation = exif::orientation(exif_block(bytes));
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
                return Err(DecodeError::Corrupt(
                    "more rows than the header says".into(),
                ));
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
                return Err(DecodeError::Corrupt(
                    "more rows than the header says".into(),
                ));
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
        .flat_map(move |(x0, xs, y0, ys)| {
            (y0..height).step_by(ys as usize).map(move |y| (x0, xs, y))
        })
}
