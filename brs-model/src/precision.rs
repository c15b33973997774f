//! Number formats and memory layouts for running the networks: float32, or bfloat16 where the
//! hardware multiplies it natively, and channels-last (NHWC) storage, which oneDNN's CPU
//! convolutions prefer.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
#[cfg(feature = "torch")]
use tch::nn::VarStore;
#[cfg(feature = "torch")]
use tch::{Device, Kind, Tensor};

/// The number format of inference.
///
/// bfloat16 keeps float32's range with an 8-bit mantissa: on a CPU with AVX512-BF16 a 256 px
/// light generator runs about 2.2x faster than in float32, and its output differs by about 0.004
/// on average (half a grey level of 255) and a few levels at worst (measured in this module's
/// tests and docs/benchmarks.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bfloat16 on a CPU that has native bfloat16 dot products (AVX512-BF16), float32 elsewhere
    /// (GPUs included: pick `bf16` or `f32` there explicitly).
    #[default]
    Auto,
    F32,
    Bf16,
}

impl Precision {
    /// The tensor kind this precision runs in on `device`.
    #[cfg(feature = "torch")]
    pub fn kind(self, device: Device) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
            Precision::Auto if device == Device::Cpu && cpu_has_native_bf16() => Kind::BFloat16,
            Precision::Auto => Kind::Float,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Precision::Auto),
            "f32" | "float32" | "fp32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => Err(format!("precision {other:?} (allowed: auto, f32, bf16)")),
        }
    }
}

/// Whether this CPU multiplies bfloat16 natively (AVX512-BF16; AMX machines have it too).
pub fn cpu_has_native_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The same values stored channels-last (NHWC strides); tensors that are not 4-d are returned
/// as they are.
#[cfg(feature = "torch")]
pub fn channels_last(t: &Tensor) -> Tensor {
    if t.dim() == 4 {
        t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    } else {
        t.shallow_clone()
    }
}

/// Stores the 4-d variables of `vs` (convolution weights) channels-last, in place.
#[cfg(feature = "torch")]
pub fn store_channels_last(vs: &VarStore) {
    tch::no_grad(|| {
        for (_, mut var) in vs.variables() {
            if var.dim() == 4 {
                let cl = channels_last(&var);
                var.set_data(&cl);
            }
        }
    });
}

#[cfg(all(test, feature = "torch"))]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_precisions() {
        for p in [Precision::Auto, Precision::F32, Precision::Bf16] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert_eq!("BF16".parse::<Precision>(), Ok(Precision::Bf16));
        let err = "f8".parse::<Precision>().expect_err("not a precision");
        assert!(err.contains("allowed"), "{err}");
        assert_eq!(Precision::F32.kind(Device::Cpu), Kind::Float);
        assert_eq!(Precision::Bf16.kind(Device::Cpu), Kind::BFloat16);
        let auto = Precision::Auto.kind(Device::Cpu);
        assert_eq!(auto == Kind::BFloat16, cpu_has_native_bf16());
    }

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let t = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let cl = channels_last(&t);
        assert!(cl.equal(&t));
        assert_eq!(cl.stride(), [60, 1, 15, 3]);
        let v = Tensor::arange(3, (Kind::Float, Device::Cpu));
        assert_eq!(channels_last(&v).stride(), [1]);
    }
}
