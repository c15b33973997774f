//! The translation path shared by interactive requests and job images: decode (under the global
//! decode limit, straight to the size the model needs where the format allows) -> optional face
//! crop -> square and resize -> the style's batcher -> encode. CPU work runs on tokio's blocking
//! pool, inference on the style's worker thread; the async threads only wait. The time a decode
//! (with its crop and resize) takes is charged to the image's owner at the decode permits, as its
//! forward pass is at the batcher, and each serves owners by what they have used there (`fair`).
//!
//! What size is safe to decode to: the generator sees `img_size` pixels a side. Without a face
//! crop, it gets the centre square of the photo's shorter side, resized, so a decode whose shorter
//! side is still at least `img_size` loses nothing the generator could use; JPEG's scaled IDCT
//! (1/2, 1/4, 1/8, the largest that keeps that side) and PNG's box filter are themselves
//! anti-aliased reductions. With `crop=face` the detector runs on the whole photo and the crop is
//! resized to `img_size`, so the shorter side is kept at 3 x `img_size` or more (a JPEG lands
//! between 3 and 6 x): a face whose framed crop spans a third of the photo's shorter side still
//! has `img_size` pixels of its own; a smaller face in a large photo gets fewer than a full decode
//! would give it, the price of bounding what any upload costs to decode. WebP has no reduced
//! decode: VP8 and VP8L predict each block from the decoded pixels of its neighbours, so every
//! pixel must be reconstructed (image-webp offers no scaled decode); `max_pixels` bounds it.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Instant;

use brs_engine::Batch;
use brs_image::decode::{DecodeLimits, ImageFormat, decode_rgb_at_least, probe, sniff};
use brs_image::resize::{Quality, resize_rgb};
use bytes::Bytes;
use image::{DynamicImage, RgbImage, imageops};
use serde::{Deserialize, Serialize};

use crate::admission::Slot;
use crate::batcher::Lane;
use crate::error::ServeError;
use crate::registry::{Registry, Style};
use crate::state::AppState;

/// Output encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OutFormat {
    Png,
    Jpeg,
    Webp,
}

impl OutFormat {
    pub(crate) const ALL: [OutFormat; 3] = [OutFormat::Png, OutFormat::Jpeg, OutFormat::Webp];

    pub(crate) fn ext(self) -> &'static str {
        match self {
            OutFormat::Png => "png",
            OutFormat::Jpeg => "jpeg",
            OutFormat::Webp => "webp",
        }
    }

    pub(crate) fn mime(self) -> &'static str {
        match self {
            OutFormat::Png => "image/png",
            OutFormat::Jpeg => "image/jpeg",
            OutFormat::Webp => "image/webp",
        }
    }

    pub(crate) fn from_ext(ext: &str) -> Option<OutFormat> {
        match ext {
            "png" => Some(OutFormat::Png),
            "jpeg" | "jpg" => Some(OutFormat::Jpeg),
            "webp" => Some(OutFormat::Webp),
            _ => None,
        }
    }
}

/// What a client asked for, as stored in a job's manifest (names, not live handles).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) style: String,
    pub(crate) format: OutFormat,
    pub(crate) size: Option<u32>,
    pub(crate) crop_face: bool,
}

/// A request checked against this server: its style is served, its size allowed.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) style: Arc<Style>,
    pub(crate) format: OutFormat,
    pub(crate) size: Option<u32>,
    pub(crate) crop_face: bool,
}

impl Params {
    /// Checks a client's raw parameters; each problem a clear error naming the parameter.
    pub(crate) fn parse(
        state: &AppState,
        style: Option<&str>,
        format: Option<&str>,
        size: Option<u32>,
        crop: Option<&str>,
    ) -> Result<Params, ServeError> {
        let format = match format {
            None => OutFormat::Png,
            Some(f) => OutFormat::from_ext(&f.to_ascii_lowercase()).ok_or_else(|| {
                ServeError::BadParameter(format!("format {f:?}: use png, jpeg or webp"))
            })?,
        };
        let crop_face = match crop {
            None | Some("none") => false,
            Some("face") => true,
            Some(c) => {
                return Err(ServeError::BadParameter(format!(
                    "crop {c:?}: use face or none"
                )));
            }
        };
        let request = Request {
            style: style.unwrap_or(state.registry.default_name()).to_string(),
            format,
            size,
            crop_face,
        };
        Params::resolve(state, &request)
    }

    /// A stored request against what this server serves now.
    pub(crate) fn resolve(state: &AppState, r: &Request) -> Result<Params, ServeError> {
        let style = lookup(&state.registry, &r.style)?;
        let max = state.config.max_output_size;
        if let Some(s) = r.size
            && !(16..=max).contains(&s)
        {
            return Err(ServeError::BadParameter(format!(
                "size {s}: allowed 16..={max}"
            )));
        }
        if r.crop_face && state.detector.is_none() {
            return Err(ServeError::BadParameter(
                "crop=face needs a face detector: add a [detector] section to the server config"
                    .into(),
            ));
        }
        Ok(Params {
            style,
            format: r.format,
            size: r.size,
            crop_face: r.crop_face,
        })
    }

    pub(crate) fn request(&self) -> Request {
        Request {
            style: self.style.name.clone(),
            format: self.format,
            size: self.size,
            crop_face: self.crop_face,
        }
    }

    /// The output side: the requested size, else the model's.
    pub(crate) fn out_size(&self) -> u32 {
        self.size
            .unwrap_or(self.style.batcher.model().img_size as u32)
    }
}

fn lookup(registry: &Registry, name: &str) -> Result<Arc<Style>, ServeError> {
    registry.serving(name)
}

/// A finished translation.
#[derive(Debug, Clone)]
pub(crate) struct Translated {
    pub(crate) bytes: Bytes,
    pub(crate) version: String,
}

/// Runs `f` on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServeError> + Send + 'static,
) -> Result<T, ServeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServeError::Task(e.to_string()))?
}

/// The decoder's limits under this server's config.
fn decode_limits(state: &AppState) -> DecodeLimits {
    DecodeLimits {
        max_bytes: state.config.max_upload_bytes,
        max_pixels: state.config.max_pixels,
        max_side: state.config.max_side,
    }
}

/// Pixels one token of a client's image rate pays for. Decoding costs time in proportion to the
/// pixels, so a larger photo costs more tokens: a 12 MP phone photo two, `max_pixels` (24 M)
/// three, and a client sending huge images is held to fewer of them.
pub(crate) const PIXELS_PER_TOKEN: u64 = 8_000_000;

/// Checks an upload's format and header (no pixel decoded) and says how many tokens of the
/// client's image rate it costs.
pub(crate) fn header_cost(state: &AppState, bytes: &[u8]) -> Result<u32, ServeError> {
    accepted(bytes)?;
    let header = probe(bytes, &decode_limits(state))?;
    Ok(tokens_for(header.width, header.height))
}

fn tokens_for(width: u32, height: u32) -> u32 {
    let pixels = u64::from(width) * u64::from(height);
    u32::try_from(pixels.div_ceil(PIXELS_PER_TOKEN).max(1)).unwrap_or(u32::MAX)
}

/// Only these are taken from clients; the decoder reads GIF, BMP and TIFF for datasets only.
pub(crate) fn accepted(bytes: &[u8]) -> Result<(), ServeError> {
    match sniff(bytes) {
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Webp) | None => Ok(()),
        Some(f) => Err(ServeError::Image(
            brs_image::decode::DecodeError::Unsupported(format!(
                "{} images are not accepted; send png, jpeg or webp",
                f.name()
            )),
        )),
    }
}

/// Translates one image: `slot` is its place in the style's queue, held until inference ends.
pub(crate) async fn translate(
    state: &AppState,
    input: Bytes,
    p: &Params,
    lane: Lane,
    slot: Slot,
) -> Result<Translated, ServeError> {
    let style = p.style.clone();
    if !style.batcher.is_ready() {
        return Err(ServeError::NotReady);
    }
    let timeout = state.config.request_timeout;
    let started = tokio::time::Instant::now();
    let model = style.batcher.model();
    let side = model.img_size as u32;
    let limits = decode_limits(state);
    // A face is found on the whole photo and then cut out: keep more pixels for it.
    let min_side = if p.crop_face {
        side.saturating_mul(3)
    } else {
        side
    };
    let detector = if p.crop_face {
        state.detector.clone()
    } else {
        None
    };
    let framing = state.config.crop;
    let permit = state.decode_permits.acquire(slot.owner()).await;
    let tensor = blocking(move || {
        let started = Instant::now();
        let prepared = (|| -> Result<Batch, ServeError> {
            accepted(&input)?;
            let img = decode_rgb_at_least(&input, &limits, min_side)?;
            drop(input);
            let img = match detector {
                Some(det) => crate::crop::crop_face(&det, &img, &framing, side)?,
                None => square(&img, side),
            };
            Ok(Batch::from_rgb(&img))
        })();
        // Charged before the permit goes back, so the next turn already counts it; a decode that
        // failed after a second of work cost that second all the same.
        permit.charge(started.elapsed());
        drop(permit);
        prepared
    })
    .await?;

    let rx = style.batcher.submit(tensor, lane, slot);
    // A client waits at most `request_timeout`. A job image has nobody waiting, and its time in
    // the queue behind interactive images and other jobs' images is no fault of its own (counting
    // it made a busy worker fail whole jobs with timeouts): it only gives up once the queue ahead
    // of it (at most `queue_depth` images, each of which a client would wait `request_timeout`
    // for) should long have drained, i.e. when the inference worker is wedged.
    let (bound, left) = match lane {
        Lane::Interactive => (timeout, timeout.saturating_sub(started.elapsed())),
        Lane::Job => {
            let depth = u32::try_from(state.config.queue_depth).unwrap_or(u32::MAX);
            let bound = timeout.saturating_mul(depth.max(1));
            (bound, bound)
        }
    };
    let inferred = match tokio::time::timeout(left, rx).await {
        Err(_) => return Err(ServeError::Timeout(bound)),
        Ok(Err(_)) => {
            return Err(ServeError::Inference(
                "the inference worker dropped the request".into(),
            ));
        }
        Ok(Ok(Err(e))) => return Err(ServeError::Inference(e)),
        Ok(Ok(Ok(x))) => x,
    };
    let (format, out_size) = (p.format, p.out_size());
    let image = inferred.image;
    let bytes = blocking(move || {
        let rgb = image
            .rgb(0)
            .map_err(|e| ServeError::Inference(format!("output image: {e}")))?;
        let rgb = resize_rgb(&rgb, out_size, out_size, Quality::Fast);
        encode(rgb, format)
    })
    .await?;
    Ok(Translated {
        bytes: Bytes::from(bytes),
        version: inferred.version,
    })
}

/// Centre square of `img` resized to `side`: faces sit in the middle of portrait photos, and the
/// generator wants a square without distortion.
pub(crate) fn square(img: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let s = w.min(h).max(1);
    let view = imageops::crop_imm(img, (w - s) / 2, (h - s) / 2, s, s).to_image();
    // SIMD convolution whose support widens with the scale, so large photos shrink without
    // aliasing (1.8 ms -> 0.3 ms for a 512 px photo with image's Triangle filter).
    resize_rgb(&view, side, side, Quality::Fast)
}

pub(crate) fn encode(img: RgbImage, format: OutFormat) -> Result<Vec<u8>, ServeError> {
    let mut out = Cursor::new(Vec::new());
    let dynamic = DynamicImage::ImageRgb8(img);
    let r = match format {
        OutFormat::Png => dynamic.write_to(&mut out, image::ImageFormat::Png),
        OutFormat::Jpeg => dynamic.write_with_encoder(
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90),
        ),
        OutFormat::Webp => dynamic.write_to(&mut out, image::ImageFormat::WebP),
    };
    r.map_err(|e| ServeError::Encode {
        format: format.ext(),
        message: e.to_string(),
    })?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_crops_the_centre_and_resizes() {
        let img = RgbImage::from_fn(300, 100, |x, _| {
            image::Rgb([if (100..200).contains(&x) { 255 } else { 0 }, 0, 0])
        });
        let sq = square(&img, 50);
        assert_eq!(sq.dimensions(), (50, 50));
        assert!(
            sq.pixels().all(|p| p.0[0] > 200),
            "only the red centre remains"
        );
    }

    #[test]
    fn larger_images_cost_more_tokens() {
        assert_eq!(tokens_for(1, 1), 1);
        assert_eq!(tokens_for(0, 0), 1, "nothing is free");
        assert_eq!(tokens_for(4000, 2000), 1, "8 MP");
        assert_eq!(tokens_for(4000, 3000), 2, "a 12 MP phone photo");
        assert_eq!(tokens_for(4898, 4898), 3, "just under max_pixels");
        assert_eq!(tokens_for(u32::MAX, u32::MAX), u32::MAX);
    }

    #[test]
    fn every_format_encodes_and_sniffs_back() {
        let img = RgbImage::from_pixel(20, 20, image::Rgb([10, 200, 30]));
        for f in [OutFormat::Png, OutFormat::Jpeg, OutFormat::Webp] {
            let b = encode(img.clone(), f).expect("encode");
            let sniffed = sniff(&b).expect("sniff");
            assert_eq!(sniffed.mime(), f.mime());
        }
    }
}
