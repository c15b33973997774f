//! Parsing the `--device` option: auto, cpu, cuda or cuda:N.

use tch::Device;

use crate::error::{ModelError, Result};

/// Turns a user's device string into a device, checking that a requested GPU exists.
///
/// `auto` picks the first GPU when libtorch sees one, the CPU otherwise. The PyPI torch wheel
/// is a CUDA build, so the same install trains on a GPU when the machine has one.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let gpus = || tch::Cuda::device_count().max(0) as usize;
    match spec.as_str() {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => cuda(0, &spec, gpus()),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => cuda(n, &spec, gpus()),
            _ => Err(ModelError::Device(spec.clone())),
        },
    }
}

fn cuda(index: usize, spec: &str, available: usize) -> Result<Device> {
    if index < available {
        Ok(Device::Cuda(index))
    } else {
        Err(ModelError::NoCuda(spec.to_string(), available))
    }
}

/// The canonical name of a device, as `--device` accepts it.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
        Device::Cpu => "cpu".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
