//! Upload validation before any pixel is decoded: declared type, size, sniffed type, header
//! dimensions against the pixel limit (all in brs-dataset's bounded decoder), each failure its own
//! status: 413 too big, 415 a type we do not take, 422 anything undecodable.

use brs_image::decode::{DecodeLimits, ImageFormat, decode_rgb, sniff};
use image::RgbImage;

use crate::error::ApiError;

/// Media types accepted as a raw request body (and sniffed from multipart fields).
pub(crate) const ACCEPTED: &[&str] = &["image/jpeg", "image/png", "image/webp"];

/// Checks a raw body's declared type; parameters such as `; charset=` are ignored.
pub(crate) fn check_content_type(ct: Option<&str>) -> Result<(), ApiError> {
    let essence = ct
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if ACCEPTED.contains(&essence.as_str()) {
        Ok(())
    } else if essence.is_empty() {
        Err(ApiError::UnsupportedMediaType(format!(
            "no Content-Type; send one of {} or multipart/form-data with a field `image`",
            ACCEPTED.join(", ")
        )))
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {essence:?} is not accepted; send one of {} or multipart/form-data with a field `image`",
            ACCEPTED.join(", ")
        )))
    }
}

/// Decodes an upload under `limits`, whatever its declared type said.
pub(crate) fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::Unprocessable {
            code: "empty",
            message: "the image is empty (0 bytes)".into(),
        });
    }
    match sniff(bytes) {
        None => Err(ApiError::Unprocessable {
            code: "undecodable",
            message: "the body is not a PNG, JPEG or WebP image".into(),
        }),
        Some(f @ (ImageFormat::Gif | ImageFormat::Bmp | ImageFormat::Tiff)) => {
            Err(ApiError::UnsupportedMediaType(format!(
                "{} images are not accepted; send {}",
                f.name(),
                ACCEPTED.join(", ")
            )))
        }
        Some(_) => Ok(decode_rgb(bytes, limits)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use proptest::prelude::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("encode");
        out.into_inner()
    }

    fn limits() -> DecodeLimits {
        DecodeLimits {
            max_bytes: 1 << 20,
            max_pixels: 10_000,
            max_side: 1000,
        }
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(Some("image/png")).is_ok());
        assert!(check_content_type(Some("IMAGE/JPEG; q=1")).is_ok());
        for ct in [None, Some("text/plain"), Some("image/gif")] {
            let e = check_content_type(ct).expect_err("refused");
            assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
    }

    #[test]
    fn statuses_of_bad_uploads() {
        let status = |b: &[u8]| decode(b, &limits()).expect_err("bad").status();
        assert_eq!(status(b""), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            status(b"hello world, not an image"),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(b"GIF89a\x01\x00\x01\x00"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        // 200x200 = 40,000 pixels is over the 10,000 limit: refused from the header alone.
        let e = decode(&png(200, 200), &limits()).expect_err("bomb");
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "too_many_pixels")
        );
        let mut cut = png(50, 50);
        cut.truncate(cut.len() / 2);
        assert_eq!(status(&cut), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            decode(&png(50, 40), &limits()).expect("ok").dimensions(),
            (50, 40)
        );
    }

    /// A decompression bomb: a tiny PNG whose header claims 60000 x 60000 pixels.
    #[test]
    fn bomb_header_is_refused_before_decoding() {
        let mut b = png(8, 8);
        // IHDR width/height sit at bytes 16..24; the CRC no longer matches, and must not matter
        // because the pixel limit is checked first or the file is called corrupt: never a decode.
        b[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        b[20..24].copy_from_slice(&60_000u32.to_be_bytes());
        let e = decode(&b, &limits()).expect_err("bomb");
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

        /// Fuzz: arbitrary bytes never panic and always map to an accepted image or a 4xx.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            match decode(&bytes, &limits()) {
                Ok(img) => prop_assert!(u64::from(img.width()) * u64::from(img.height()) <= 10_000),
                Err(e) => prop_assert!(e.status().is_client_error(), "{:?}", e),
            }
        }

        /// Fuzz: a valid PNG or JPEG with bytes flipped or cut anywhere never panics.
        #[test]
        fn mutated_images_never_panic(
            jpeg in any::<bool>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut b = if jpeg {
                let img = RgbImage::from_fn(24, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 13, 50]));
                let mut out = std::io::Cursor::new(Vec::new());
                img.write_to(&mut out, image::ImageFormat::Jpeg).expect("encode");
                out.into_inner()
            } else {
                png(24, 16)
            };
            for (i, v) in flips {
                let k = i.index(b.len());
                b[k] = v;
            }
            let keep = cut.index(b.len() + 1);
            b.truncate(keep.max(1));
            match decode(&b, &limits()) {
                Ok(img) => prop_assert!(img.width() <= 1000 && img.height() <= 1000),
                Err(e) => prop_assert!(e.status().is_client_error(), "{:?}", e),
            }
        }
    }
}
