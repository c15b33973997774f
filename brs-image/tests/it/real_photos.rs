//! CenterFace on real photos from installed packages (copied by scripts/setup): one face where the
//! reference boxes say, none on a photo without a person.

use brs_image::crop::{CropConfig, crop_face};
use brs_image::decode::{DecodeLimits, decode_file};
use brs_image::detect::{DetectorSpec, load_detector};

use brs_image::detect::iou;
use brs_testkit::setup::{centerface_model, fixture, init_ort};

fn faces(name: &str) -> (image::RgbImage, Vec<brs_image::detect::Face>) {
    init_ort();
    let spec = DetectorSpec {
        model: Some(centerface_model()),
        ..DetectorSpec::default()
    };
    let mut det = load_detector(&spec).expect("load CenterFace");
    let img = decode_file(&fixture(name), &DecodeLimits::default()).expect("decode fixture");
    let faces = det.detect(&img).expect("detect");
    (img, faces)
}

#[test]
fn astronaut_one_face_at_the_true_box() {
    let (img, faces) = faces("astronaut.png");
    assert_eq!(faces.len(), 1, "{faces:?}");
    let f = &faces[0];
    let overlap = iou(&f.bbox, &[181., 58., 270., 178.]);
    assert!(overlap >= 0.5, "IoU {overlap} for {:?}", f.bbox);
    assert!(f.score > 0.8, "{}", f.score);
    assert_eq!(f.landmarks.len(), 5);
    let crop = crop_face(&img, f, &CropConfig::default());
    assert_eq!(crop.dimensions(), (256, 256));
}

#[test]
fn grace_hopper_one_face_at_the_true_box() {
    let (_, faces) = faces("grace_hopper.jpg");
    assert_eq!(faces.len(), 1, "{faces:?}");
    let overlap = iou(&faces[0].bbox, &[174., 128., 359., 334.]);
    assert!(overlap >= 0.5, "IoU {overlap} for {:?}", faces[0].bbox);
}

#[test]
fn coffee_has_no_face() {
    let (_, faces) = faces("coffee.png");
    assert!(faces.is_empty(), "{faces:?}");
}
