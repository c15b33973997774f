//! What the reader returns: tensors copied out of their storages, with PyTorch's element types.

use super::{PickleError, Result};

/// Element type of a tensor read from a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F16,
    BF16,
    F32,
    F64,
    I64,
    I32,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(&self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// PyTorch's name for the type, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    fn is_float(&self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// `torch.FloatStorage` and friends: the typed-storage classes named in persistent ids.
    pub(super) fn from_storage_class(name: &str) -> Option<DType> {
        Some(match name {
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }

    /// `torch.float32` and its aliases, as pickled for `_rebuild_tensor_v3`.
    pub(super) fn from_torch_attr(name: &str) -> Option<DType> {
        Some(match name {
            "float16" | "half" => DType::F16,
            "bfloat16" => DType::BF16,
            "float32" | "float" => DType::F32,
            "float64" | "double" => DType::F64,
            "int64" | "long" => DType::I64,
            "int32" | "int" => DType::I32,
            "uint8" => DType::U8,
            "bool" => DType::Bool,
            _ => return None,
        })
    }
}

/// One tensor, copied out of its storage.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Contiguous row-major little-endian elements, exactly `numel * dtype.size()` bytes:
    /// the saved strides and storage offset are already applied.
    pub data: Vec<u8>,
}

impl RawTensor {
    /// Number of elements (1 for a 0-dim tensor).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements widened or narrowed to f32; only floating-point tensors convert.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let size = self.dtype.size();
        if !self.dtype.is_float() {
            return Err(PickleError::Unsupported(format!(
                "unsupported conversion of a {} tensor to float32",
                self.dtype.name()
            )));
        }
        let chunks = self.data.chunks_exact(size);
        Ok(match self.dtype {
            DType::F32 => chunks
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F64 => chunks
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            DType::F16 => chunks
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            DType::BF16 => chunks
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            _ => Vec::new(),
        })
    }
}

/// IEEE half to single; exact for every input, subnormals and NaN payloads included.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: renormalise so the implicit leading one appears.
            let mut e: u32 = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pickle_half_precision_conversions_are_exact() {
        let t = RawTensor {
            dtype: DType::F16,
            shape: vec![6],
            data: [0x3c00u16, 0xc000, 0x0001, 0x7c00, 0x0000, 0x3555]
                .iter()
                .flat_map(|h| h.to_le_bytes())
                .collect(),
        };
        let v = t.to_f32_vec().expect("f16");
        assert_eq!(&v[..5], &[1.0, -2.0, 2f32.powi(-24), f32::INFINITY, 0.0]);
        assert_eq!(v[5], 0.333_251_95);
        let b = RawTensor {
            dtype: DType::BF16,
            shape: vec![1],
            data: 0x3fc0u16.to_le_bytes().to_vec(),
        };
        assert_eq!(b.to_f32_vec().expect("bf16"), vec![1.5]);
    }
}
