//! Parsing the `--device` option: auto, cpu, cuda or cuda:N.

use crate::error::{ModelError, Result};

/// Where the networks run: libtorch's devices.
#[cfg(feature = "torch")]
pub use tch::Device;

/// Where the networks run in a build without libtorch, where ONNX Runtime computes on the CPU.
#[cfg(not(feature = "torch"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
}

/// A device as a user names it (`auto`, `cpu`, `cuda`, `cuda:N`), checked for syntax when parsed
/// (so a config file with a typo is refused at once) and resolved against the machine later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The first GPU when libtorch sees one, else the CPU.
    Auto,
    #[default]
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = ModelError;

    fn from_str(spec: &str) -> Result<DeviceSpec> {
        let spec = spec.trim().to_ascii_lowercase();
        match spec.as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceSpec::Cuda(n)),
                _ => Err(ModelError::Device(spec.clone())),
            },
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceSpec {
    /// The device on this machine, checking that a requested GPU exists.
    ///
    /// `auto` picks the first GPU when libtorch sees one, the CPU otherwise. The PyPI torch wheel
    /// is a CUDA build, so the same install trains on a GPU when the machine has one.
    #[cfg(feature = "torch")]
    pub fn resolve(self) -> Result<Device> {
        let gpus = || tch::Cuda::device_count().max(0) as usize;
        match self {
            DeviceSpec::Auto => Ok(Device::cuda_if_available()),
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => cuda(n, &self.to_string(), gpus()),
        }
    }

    /// The CPU: a build without libtorch sees no GPU, so `cuda` is refused as on a machine
    /// without one.
    #[cfg(not(feature = "torch"))]
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceSpec::Auto | DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(_) => Err(ModelError::NoCuda(self.to_string(), 0)),
        }
    }
}

#[cfg(feature = "torch")]
fn cuda(index: usize, spec: &str, available: usize) -> Result<Device> {
    if index < available {
        Ok(Device::Cuda(index))
    } else {
        Err(ModelError::NoCuda(spec.to_string(), available))
    }
}

/// The canonical name of a device, as `--device` accepts it.
#[cfg(feature = "torch")]
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
        Device::Cpu => "cpu".into(),
    }
}

#[cfg(all(test, feature = "torch"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse_device(spec: &str) -> Result<Device> {
        spec.parse::<DeviceSpec>()?.resolve()
    }

    #[test]
    fn parses_devices() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device(" CPU ").unwrap(), Device::Cpu);
        let auto = parse_device("auto").unwrap();
        assert_eq!(auto == Device::Cpu, !tch::Cuda::is_available());
        assert!(matches!(parse_device("tpu"), Err(ModelError::Device(_))));
        assert!(matches!(parse_device("cuda:x"), Err(ModelError::Device(_))));
        // No GPU on CI machines: a request for one must say so, not crash later.
        if !tch::Cuda::is_available() {
            let err = parse_device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("CUDA is not available"), "{err}");
        }
    }
}
