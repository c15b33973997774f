//! Float weights as plain float32 arrays, read from safetensors without libtorch: what the ONNX
//! export builds its graph from, in builds with and without the `torch` feature.

use std::collections::BTreeMap;

use safetensors::tensor::{Dtype, SafeTensors};

use crate::error::{ModelError, Result};

/// One tensor's shape and values, row-major, as float32.
#[derive(Debug, Clone, PartialEq)]
pub struct Floats {
    pub shape: Vec<i64>,
    pub values: Vec<f32>,
}

impl Floats {
    pub fn new(shape: Vec<i64>, values: Vec<f32>) -> Self {
        Floats { shape, values }
    }

    /// Every value mapped by `f`, the shape kept.
    pub fn map(&self, f: impl Fn(f32) -> f32) -> Floats {
        Floats::new(
            self.shape.clone(),
            self.values.iter().map(|&v| f(v)).collect(),
        )
    }

    /// The same values under another shape of as many elements.
    pub fn reshaped(self, shape: Vec<i64>) -> Floats {
        debug_assert_eq!(shape.iter().product::<i64>(), self.values.len() as i64);
        Floats { shape, ..self }
    }
}

/// Parses safetensors bytes into float32 arrays by name. float32, float64, float16 and bfloat16
/// are read (the last two as `export --half` writes them); any other type is refused by name.
pub fn from_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, Floats>> {
    let st = SafeTensors::deserialize(bytes).map_err(ModelError::Safetensors)?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => chunks::<4>(data).map(f32::from_le_bytes).collect(),
            Dtype::F64 => chunks::<8>(data)
                .map(|b| f64::from_le_bytes(b) as f32)
                .collect(),
            Dtype::F16 => chunks::<2>(data)
                .map(|b| half::f16::from_le_bytes(b).to_f32())
                .collect(),
            Dtype::BF16 => chunks::<2>(data)
                .map(|b| half::bf16::from_le_bytes(b).to_f32())
                .collect(),
            other => {
                return Err(ModelError::TensorType(format!(
                    "{other:?} for {name}, which should hold floats"
                )));
            }
        };
        let shape = view.shape().iter().map(|&d| d as i64).collect();
        out.insert(name, Floats::new(shape, values));
    }
    Ok(out)
}

/// `data` in little-endian words of `N` bytes (safetensors has checked the length is a multiple).
fn chunks<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    data.chunks_exact(N).map(|c| {
        let mut word = [0u8; N];
        word.copy_from_slice(c);
        word
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::borrow::Cow;

    use safetensors::tensor::View;

    use super::*;

    struct Raw(Dtype, Vec<usize>, Vec<u8>);

    impl View for &Raw {
        fn dtype(&self) -> Dtype {
            self.0
        }
        fn shape(&self) -> &[usize] {
            &self.1
        }
        fn data(&self) -> Cow<'_, [u8]> {
            Cow::Borrowed(&self.2)
        }
        fn data_len(&self) -> usize {
            self.2.len()
        }
    }

    fn file(tensors: &[(&str, Raw)]) -> Vec<u8> {
        safetensors::serialize(tensors.iter().map(|(n, r)| (*n, r)), None).unwrap()
    }

    #[test]
    fn every_float_type_reads_as_float32() {
        let want = [1.5f32, -0.25, 3.0, 0.0];
        let bytes = |f: &dyn Fn(f32) -> Vec<u8>| want.iter().flat_map(|&v| f(v)).collect();
        let st = file(&[
            (
                "a",
                Raw(Dtype::F32, vec![2, 2], bytes(&|v| v.to_le_bytes().to_vec())),
            ),
            (
                "b",
                Raw(
                    Dtype::F64,
                    vec![4],
                    bytes(&|v| f64::from(v).to_le_bytes().to_vec()),
                ),
            ),
            (
                "c",
                Raw(
                    Dtype::F16,
                    vec![4],
                    bytes(&|v| half::f16::from_f32(v).to_le_bytes().to_vec()),
                ),
            ),
            (
                "d",
                Raw(
                    Dtype::BF16,
                    vec![1, 4],
                    bytes(&|v| half::bf16::from_f32(v).to_le_bytes().to_vec()),
                ),
            ),
        ]);
        let read = from_safetensors(&st).unwrap();
        assert_eq!(read["a"], Floats::new(vec![2, 2], want.to_vec()));
        for name in ["b", "c", "d"] {
            assert_eq!(read[name].values, want, "{name}");
        }
        assert_eq!(read["d"].shape, [1, 4]);
    }

    #[test]
    fn integers_are_refused_by_name() {
        let st = file(&[(
            "step",
            Raw(Dtype::I64, vec![1], 7i64.to_le_bytes().to_vec()),
        )]);
        let err = from_safetensors(&st).unwrap_err();
        assert!(
            matches!(&err, ModelError::TensorType(t) if t.contains("I64 for step")),
            "{err}"
        );
    }
}
