//! Property test (our fuzz target): decode + crop never panic on arbitrary bytes or on mutated
//! valid images, and whatever decodes respects the limits and crops to the requested size.

use brs_image::crop::{CropConfig, Pad, crop_face};
use brs_image::decode::{DecodeLimits, decode_rgb};
use brs_image::detect::Face;
use image::{DynamicImage, ImageFormat, RgbImage};
use proptest::prelude::*;

use brs_testkit::images::encode;

fn seeds() -> Vec<Vec<u8>> {
    let img = DynamicImage::ImageRgb8(brs_testkit::images::gradient(24, 24));
    [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::WebP,
    ]
    .into_iter()
    .map(|f| encode(&img, f))
    .collect()
}

fn limits() -> DecodeLimits {
    DecodeLimits {
        max_bytes: 1 << 20,
        max_pixels: 1 << 20,
        max_side: 4096,
    }
}

fn check(bytes: &[u8], bbox: [f32; 4], size: u32, reflect: bool) {
    let l = limits();
    if let Ok(img) = decode_rgb(bytes, &l) {
        let (w, h) = img.dimensions();
        assert!(
            w > 0
                && h > 0
                && w <= l.max_side
                && h <= l.max_side
                && u64::from(w) * u64::from(h) <= l.max_pixels
        );
        let cfg = CropConfig {
            size,
            pad: if reflect {
                Pad::Reflect
            } else {
                Pad::Color([1, 2, 3])
            },
            ..CropConfig::default()
        };
        let face = Face {
            bbox,
            score: 1.0,
            landmarks: vec![],
        };
        let crop: RgbImage = crop_face(&img, &face, &cfg);
        assert_eq!(crop.dimensions(), (size, size));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048), prefix in 0usize..7,
                       bbox in proptest::array::uniform4(-100f32..200.0), size in 1u32..64, reflect: bool) {
        // Prepend a real magic so the fuzzing reaches each decoder, not only the sniffer.
        let magics: [&[u8]; 7] = [b"", b"\x89PNG\r\n\x1a\n", b"\xFF\xD8\xFF", b"GIF89a", b"II*\0", b"RIFF\0\0\0\0WEBPVP8 ", b"BM\0\0\0\0\0\0\0\0\0\0\0\0\x28\0\0\0"];
        let mut data = magics[prefix].to_vec();
        data.extend_from_slice(&bytes);
        check(&data, bbox, size, reflect);
    }

    #[test]
    fn mutated_valid_images(which in 0usize..6, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
                            cut in any::<Option<usize>>(), bbox in proptest::array::uniform4(-50f32..80.0), size in 1u32..48) {
        let mut data = seeds()[which].clone();
        for (pos, val) in flips {
            let n = data.len();
            data[pos % n] = val;
        }
        if let Some(c) = cut {
            let n = data.len();
            data.truncate(c % (n + 1));
        }
        check(&data, bbox, size, true);
    }
}
