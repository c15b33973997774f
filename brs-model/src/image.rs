//! Images to tensors and back: RGB8 <-> [3, H, W] float in [-1, 1], as the reference normalises
//! (mean 0.5, std 0.5 per channel).

use image::RgbImage;
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};

/// An RGB image as a [3, H, W] float tensor in [-1, 1] on the CPU.
pub fn rgb_to_tensor(img: &RgbImage) -> Tensor {
    let (w, h) = img.dimensions();
    Tensor::from_slice(img.as_raw())
        .to_kind(Kind::Float)
        .view([h as i64, w as i64, 3])
        .permute([2, 0, 1])
        .contiguous()
        / 127.5
        - 1.0
}

/// A [3, H, W] (or [1, 3, H, W]) tensor in [-1, 1] as an RGB image; values are clamped.
pub fn tensor_to_rgb(t: &Tensor) -> Result<RgbImage> {
    let t = match t.dim() {
        4 if t.size()[0] == 1 => t.squeeze_dim(0),
        3 => t.shallow_clone(),
        _ => {
            return Err(ModelError::Image(format!(
                "expected [3, H, W], got {:?}",
                t.size()
            )));
        }
    };
    let size = t.size();
    if size[0] != 3 {
        return Err(ModelError::Image(format!(
            "expected 3 channels, got {:?}",
            size
        )));
    }
    let (h, w) = (size[1], size[2]);
    let bytes = ((t.detach().to_device(Device::Cpu).to_kind(Kind::Float) + 1.0) * 127.5)
        .round()
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous();
    let mut raw = vec![0u8; (h * w * 3) as usize];
    let numel = raw.len();
    bytes.f_copy_data_u8(&mut raw, numel)?;
    RgbImage::from_raw(w as u32, h as u32, raw)
        .ok_or_else(|| ModelError::Image("buffer does not match dimensions".into()))
}

/// A heatmap [1, h, w] (any range) scaled to [0, 1] and resized to `size`, as a grey RGB image
/// coloured with a simple blue-to-red ramp, the way users read attention maps.
pub fn heatmap_to_rgb(heatmap: &Tensor, size: i64) -> Result<RgbImage> {
    let h = heatmap.detach().to_device(Device::Cpu).to_kind(Kind::Float);
    let h = h.view([1, 1, h.size()[h.dim() - 2], h.size()[h.dim() - 1]]);
    let h = h
        .upsample_bilinear2d([size, size], false, None, None)
        .view([size, size]);
    let (lo, hi) = (h.min().double_value(&[]), h.max().double_value(&[]));
    let h = (h - lo) / (hi - lo).max(1e-8);
    let r = h.shallow_clone();
    let g = ((&h * 2.0 - 1.0).abs() * -1.0 + 1.0).clamp(0.0, 1.0);
    let b = 1.0 - &h;
    tensor_to_rgb(&(Tensor::stack(&[r, g, b], 0) * 2.0 - 1.0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 50, y as u8 * 80, 7]));
        let t = rgb_to_tensor(&img);
        assert_eq!(t.size(), [3, 3, 5]);
        assert!(t.max().double_value(&[]) <= 1.0 && t.min().double_value(&[]) >= -1.0);
        assert_eq!(tensor_to_rgb(&t).unwrap(), img);
        assert!(tensor_to_rgb(&Tensor::zeros([2, 4, 4], (Kind::Float, Device::Cpu))).is_err());
    }

    #[test]
    fn heatmap_spans_the_ramp() {
        let h = Tensor::arange(16, (Kind::Float, Device::Cpu)).view([1, 4, 4]);
        let img = heatmap_to_rgb(&h, 8).unwrap();
        assert_eq!(img.dimensions(), (8, 8));
        assert!(img.get_pixel(0, 0)[2] > 200 && img.get_pixel(7, 7)[0] > 200);
    }
}
