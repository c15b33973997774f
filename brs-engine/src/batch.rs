//! Images as the engines take and give them: float32 NCHW in [-1, 1], as the reference normalises
//! (pixel / 127.5 - 1), held in a plain vector so that a server built without libtorch passes
//! them to ONNX Runtime as they are.

use image::RgbImage;

/// A batch of `n` images of `c` channels and `side` x `side` pixels, row-major NCHW.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    shape: [usize; 4],
    values: Vec<f32>,
}

/// Why a batch cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{values} values do not make a batch of shape {shape:?}")]
    Length { shape: [usize; 4], values: usize },
    #[error("images of shape {found:?} cannot join a batch of shape {batch:?}")]
    Mixed {
        batch: [usize; 4],
        found: [usize; 4],
    },
    #[error("image {index} of a batch of {n}")]
    Index { index: usize, n: usize },
    #[error("a batch of {0} channels is not an RGB image")]
    NotRgb(usize),
    #[error("shape {0:?} is not [N, C, H, W]")]
    Dims(Vec<i64>),
}

impl Batch {
    /// `values` of `shape` [N, C, H, W] (H and W equal or not: the engine checks the model's).
    pub fn new(shape: [usize; 4], values: Vec<f32>) -> Result<Batch, BatchError> {
        if shape.iter().product::<usize>() != values.len() {
            return Err(BatchError::Length {
                shape,
                values: values.len(),
            });
        }
        Ok(Batch { shape, values })
    }

    /// `values` of shape `dims` written as the model and ONNX Runtime write shapes: four sizes.
    pub fn from_dims(dims: &[i64], values: Vec<f32>) -> Result<Batch, BatchError> {
        let shape: Option<[usize; 4]> = dims
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<Vec<_>>>()
            .and_then(|v| v.try_into().ok());
        Batch::new(
            shape.ok_or_else(|| BatchError::Dims(dims.to_vec()))?,
            values,
        )
    }

    /// A batch of shape `dims` whose i-th of n values (row-major) is `f(i, n)`.
    pub fn from_fn(dims: &[i64], f: impl Fn(usize, usize) -> f32) -> Result<Batch, BatchError> {
        let n = dims
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .product();
        Batch::from_dims(dims, (0..n).map(|i| f(i, n)).collect())
    }

    /// One RGB image as a batch of one, in [-1, 1].
    pub fn from_rgb(img: &RgbImage) -> Batch {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut values = vec![0f32; 3 * h * w];
        for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                values[c * h * w + i] = f32::from(v) / 127.5 - 1.0;
            }
        }
        Batch {
            shape: [1, 3, h, w],
            values,
        }
    }

    /// The batches one after the other, as one batch; all must have the same image shape.
    pub fn concat<'a>(parts: impl IntoIterator<Item = &'a Batch>) -> Result<Batch, BatchError> {
        let parts: Vec<&Batch> = parts.into_iter().collect();
        let Some(first) = parts.first() else {
            return Ok(Batch {
                shape: [0, 0, 0, 0],
                values: Vec::new(),
            });
        };
        let mut shape = first.shape;
        shape[0] = 0;
        let mut values = Vec::with_capacity(parts.iter().map(|p| p.values.len()).sum());
        for p in &parts {
            if p.shape[1..] != shape[1..] {
                return Err(BatchError::Mixed {
                    batch: shape,
                    found: p.shape,
                });
            }
            shape[0] += p.shape[0];
            values.extend_from_slice(&p.values);
        }
        Ok(Batch { shape, values })
    }

    /// Up to `shares` consecutive parts of nearly equal size (the first ones one image larger),
    /// none empty unless the batch is (then one empty part).
    pub fn split(&self, shares: usize) -> Vec<Batch> {
        let n = self.len();
        let shares = shares.clamp(1, n.max(1));
        let per_image = self.image_len();
        let mut out = Vec::with_capacity(shares);
        let mut start = 0;
        for i in 0..shares {
            let len = n / shares + usize::from(i < n % shares);
            let mut shape = self.shape;
            shape[0] = len;
            out.push(Batch {
                shape,
                values: self.values[start * per_image..(start + len) * per_image].to_vec(),
            });
            start += len;
        }
        out
    }

    /// Image `index` as RGB: each value mapped back to 0..=255, rounded (half to even, as libtorch
    /// rounds) and clamped.
    pub fn rgb(&self, index: usize) -> Result<RgbImage, BatchError> {
        let [n, c, h, w] = self.shape;
        if index >= n {
            return Err(BatchError::Index { index, n });
        }
        if c != 3 {
            return Err(BatchError::NotRgb(c));
        }
        let plane = h * w;
        let image = &self.values[index * self.image_len()..(index + 1) * self.image_len()];
        let mut raw = vec![0u8; 3 * plane];
        for (i, px) in raw.chunks_exact_mut(3).enumerate() {
            for (ch, out) in px.iter_mut().enumerate() {
                let v = ((image[ch * plane + i] + 1.0) * 127.5).round_ties_even();
                *out = v.clamp(0.0, 255.0) as u8;
            }
        }
        RgbImage::from_raw(w as u32, h as u32, raw).ok_or(BatchError::Length {
            shape: self.shape,
            values: self.values.len(),
        })
    }

    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [N, C, H, W].
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// The shape as the model checks and ONNX Runtime takes it.
    pub fn dims(&self) -> Vec<i64> {
        self.shape.iter().map(|&d| d as i64).collect()
    }

    pub fn values(&self) -> &[f32] {
        &self.values
    }

    pub fn into_values(self) -> Vec<f32> {
        self.values
    }

    fn image_len(&self) -> usize {
        self.shape[1..].iter().product()
    }
}

#[cfg(feature = "torch")]
mod torch {
    use tch::{Device, Kind, Tensor};

    use super::Batch;
    use crate::EngineError;

    impl Batch {
        /// A batch [N, C, H, W] of any float kind or device, as float32.
        pub fn from_tensor(t: &Tensor) -> Result<Batch, EngineError> {
            let flat = t
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .contiguous()
                .view(-1);
            let values =
                Vec::<f32>::try_from(&flat).map_err(|e| EngineError::Inference(e.to_string()))?;
            Ok(Batch::from_dims(&t.size(), values)?)
        }

        /// The batch as a float32 CPU tensor.
        pub fn to_tensor(&self) -> Tensor {
            Tensor::from_slice(&self.values).view(self.dims().as_slice())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 50, y as u8 * 80, 7]))
    }

    #[test]
    fn rgb_round_trips_exactly_through_planes_in_the_unit_range() {
        let img = image(5, 3);
        let b = Batch::from_rgb(&img);
        assert_eq!(b.shape(), [1, 3, 3, 5]);
        assert!(b.values().iter().all(|v| (-1.0..=1.0).contains(v)));
        // Channel planes: the green plane starts after the 15 red values.
        assert_eq!(b.values()[15 + 5], 80.0 / 127.5 - 1.0);
        assert_eq!(b.rgb(0).unwrap(), img);
        assert_eq!(b.rgb(1), Err(BatchError::Index { index: 1, n: 1 }));
    }

    #[test]
    fn values_round_to_the_nearest_level_and_clamp() {
        // 0.5 -> 191.25 -> 191; 0 -> 127.5 -> 128; 2.0 -> 382.5 -> 255; -3 -> 0.
        let v = [0.5, 0.0, 2.0, -3.0];
        let b = Batch::new([1, 3, 1, 4], [v, v, v].concat()).unwrap();
        assert_eq!(
            b.rgb(0).unwrap().as_raw(),
            &[191, 191, 191, 128, 128, 128, 255, 255, 255, 0, 0, 0]
        );
    }

    #[test]
    fn batches_join_and_split_in_order() {
        let parts: Vec<Batch> = (0..5u8)
            .map(|i| Batch::from_rgb(&RgbImage::from_pixel(4, 2, image::Rgb([i, 0, 0]))))
            .collect();
        let joined = Batch::concat(&parts).unwrap();
        assert_eq!(joined.shape(), [5, 3, 2, 4]);
        let shares = joined.split(2);
        assert_eq!(shares.iter().map(Batch::len).collect::<Vec<_>>(), [3, 2]);
        assert_eq!(Batch::concat(&shares).unwrap(), joined);
        assert_eq!(shares[1].rgb(0).unwrap(), parts[3].rgb(0).unwrap());
        assert_eq!(joined.split(9).len(), 5);
        let other = Batch::from_rgb(&image(3, 2));
        assert!(matches!(
            Batch::concat([&parts[0], &other]),
            Err(BatchError::Mixed { .. })
        ));
        assert!(matches!(
            Batch::new([2, 3, 2, 2], vec![0.0; 5]),
            Err(BatchError::Length { values: 5, .. })
        ));
        for dims in [&[1, 3, 2][..], &[1, -3, 2, 2]] {
            assert_eq!(
                Batch::from_dims(dims, Vec::new()),
                Err(BatchError::Dims(dims.to_vec()))
            );
        }
        let ramp = Batch::from_fn(&[1, 1, 2, 2], |i, n| (i * 10 + n) as f32).unwrap();
        assert_eq!(ramp.values(), [4.0, 14.0, 24.0, 34.0]);
    }
}
