//! brs-image: the image path every brs tool shares, so a served photo is decoded, detected and
//! framed exactly as a training photo was.
//!
//! - [`decode`]: untrusted bytes to RGB8 under limits checked before any pixel is decoded, reduced
//!   straight to the size a model needs where the format allows it.
//! - [`resize`]: SIMD resizing.
//! - [`detect`]: ONNX face detectors (CenterFace, YOLO exports) through ONNX Runtime.
//! - [`crop`]: the square framing of a face that training crops and `crop=face` share.
//! - [`files`]: listing image folders and encoding PNGs.

pub mod crop;
pub mod decode;
pub mod detect;
pub mod files;
pub mod resize;
