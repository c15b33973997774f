//! TensorFlow's element types (`DataType` in `tensorflow/core/framework/types.proto`): names for
//! messages and the byte widths the size checks need.

use std::borrow::Cow;
use std::fmt;

/// A tensor's element type as the bundle records it. Kept as the raw enum value so that a type
/// this reader does not know (a newer TensorFlow's) still lists and is refused by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataType(pub i32);

impl DataType {
    pub const FLOAT: DataType = DataType(1);
    pub const DOUBLE: DataType = DataType(2);
    pub const INT32: DataType = DataType(3);
    pub const UINT8: DataType = DataType(4);
    pub const STRING: DataType = DataType(7);
    pub const INT64: DataType = DataType(9);
    pub const BOOL: DataType = DataType(10);
    pub const BFLOAT16: DataType = DataType(14);
    pub const HALF: DataType = DataType(19);
    pub const RESOURCE: DataType = DataType(20);
    pub const VARIANT: DataType = DataType(21);

    /// TensorFlow's name (`DT_FLOAT`), or the number for a type this reader does not know.
    pub fn name(self) -> Cow<'static, str> {
        match NAMES.get(usize::try_from(self.0).unwrap_or(usize::MAX)) {
            Some(&(name, _)) if !name.is_empty() => Cow::Borrowed(name),
            _ => Cow::Owned(format!("DataType({})", self.0)),
        }
    }

    /// Bytes per element, for the types whose tensors TensorFlow writes as a plain array;
    /// `None` for strings, variants, resources and types unknown here, whose entry sizes
    /// cannot be checked against their shapes.
    pub fn element_size(self) -> Option<usize> {
        match NAMES.get(usize::try_from(self.0).ok()?) {
            Some(&(_, size)) if size > 0 => Some(size),
            _ => None,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// (name, element size or 0) indexed by enum value, as in TensorFlow 2.21's types.proto.
/// The 4- and 2-bit types are left without a size: how a bundle lays them out is not something
/// this reader needs to know to refuse them.
const NAMES: [(&str, usize); 34] = [
    ("DT_INVALID", 0),
    ("DT_FLOAT", 4),
    ("DT_DOUBLE", 8),
    ("DT_INT32", 4),
    ("DT_UINT8", 1),
    ("DT_INT16", 2),
    ("DT_INT8", 1),
    ("DT_STRING", 0),
    ("DT_COMPLEX64", 8),
    ("DT_INT64", 8),
    ("DT_BOOL", 1),
    ("DT_QINT8", 1),
    ("DT_QUINT8", 1),
    ("DT_QINT32", 4),
    ("DT_BFLOAT16", 2),
    ("DT_QINT16", 2),
    ("DT_QUINT16", 2),
    ("DT_UINT16", 2),
    ("DT_COMPLEX128", 16),
    ("DT_HALF", 2),
    ("DT_RESOURCE", 0),
    ("DT_VARIANT", 0),
    ("DT_UINT32", 4),
    ("DT_UINT64", 8),
    ("DT_FLOAT8_E5M2", 1),
    ("DT_FLOAT8_E4M3FN", 1),
    ("DT_FLOAT8_E4M3FNUZ", 1),
    ("DT_FLOAT8_E4M3B11FNUZ", 1),
    ("DT_FLOAT8_E5M2FNUZ", 1),
    ("DT_INT4", 0),
    ("DT_UINT4", 0),
    ("DT_INT2", 0),
    ("DT_UINT2", 0),
    ("DT_FLOAT4_E2M1FN", 0),
];

/// IEEE half to single (shared with the PyTorch reader).
pub(super) use crate::pickle::f16_to_f32;

/// bfloat16 is the top half of an f32, so widening is a shift.
pub(super) fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_and_sizes_follow_types_proto() {
        assert_eq!(DataType::FLOAT.name(), "DT_FLOAT");
        assert_eq!(DataType::HALF.name(), "DT_HALF");
        assert_eq!(DataType(23).name(), "DT_UINT64");
        assert_eq!(DataType(999).name(), "DataType(999)");
        assert_eq!(DataType(-3).name(), "DataType(-3)");
        assert_eq!(DataType::FLOAT.element_size(), Some(4));
        assert_eq!(DataType::BFLOAT16.element_size(), Some(2));
        assert_eq!(DataType(18).element_size(), Some(16));
        assert_eq!(DataType::STRING.element_size(), None);
        assert_eq!(DataType(0).element_size(), None);
        assert_eq!(DataType(-1).element_size(), None);
    }

    #[test]
    fn half_and_bfloat16_widen_exactly() {
        let cases = [
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x0001, 2f32.powi(-24)),
            (0x03ff, 1023.0 * 2f32.powi(-24)),
            (0x7bff, 65504.0),
            (0x7c00, f32::INFINITY),
            (0x8000, -0.0),
        ];
        for (h, want) in cases {
            assert_eq!(f16_to_f32(h).to_bits(), f32::to_bits(want), "{h:#06x}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(bf16_to_f32(0x3fc0), 1.5);
        assert_eq!(bf16_to_f32(0xff80), f32::NEG_INFINITY);
    }
}
