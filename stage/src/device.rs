//! Devices and dtypes as manifests name them: one vocabulary, without libtorch, for the params
//! that name them and the model code that runs on them.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a model runs: `cpu`, `cuda` (the first GPU), `cuda:N`, or `auto` (the first GPU when
/// there is one, else the CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
    Auto,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`; use cpu, cuda, cuda:N or auto")]
    Unknown(String),
    #[error("device `{0}` was requested but libtorch sees {1} CUDA device(s) here; use `cpu` or `auto`")]
    NoCuda(String, usize),
    #[error("cannot ask libtorch which devices this machine has: {0}")]
    Probe(String),
}

impl FromStr for Device {
    type Err = DeviceError;

    fn from_str(name: &str) -> Result<Device, DeviceError> {
        match name {
            "cpu" => Ok(Device::Cpu),
            "auto" => Ok(Device::Auto),
            "cuda" => Ok(Device::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| DeviceError::Unknown(other.to_string())),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::Auto => f.write_str("auto"),
        }
    }
}

impl Device {
    /// The device `name` stands for on a machine whose libtorch sees `cuda_devices` GPUs:
    /// `auto` settled, a GPU that is not there refused.
    pub fn settle(name: &str, cuda_devices: usize) -> Result<Device, DeviceError> {
        match name.parse()? {
            Device::Auto if cuda_devices > 0 => Ok(Device::Cuda(0)),
            Device::Auto | Device::Cpu => Ok(Device::Cpu),
            Device::Cuda(i) if i < cuda_devices => Ok(Device::Cuda(i)),
            Device::Cuda(_) => Err(DeviceError::NoCuda(name.to_string(), cuda_devices)),
        }
    }
}

/// Floating-point types a model may run in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    F32,
    Bf16,
    F16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_as_written_and_settle_on_what_the_machine_has() {
        let d = |s: &str| s.parse::<Device>();
        assert_eq!(d("cuda"), Ok(Device::Cuda(0)));
        assert_eq!(d("cuda:1").unwrap().to_string(), "cuda:1");
        assert_eq!(d("gpu"), Err(DeviceError::Unknown("gpu".into())));
        assert_eq!(d("cuda:x"), Err(DeviceError::Unknown("cuda:x".into())));
        assert_eq!(Device::settle("auto", 0), Ok(Device::Cpu));
        assert_eq!(Device::settle("auto", 2), Ok(Device::Cuda(0)));
        assert_eq!(Device::settle("cuda", 0), Err(DeviceError::NoCuda("cuda".into(), 0)));
        assert_eq!(Device::settle("cuda:1", 2), Ok(Device::Cuda(1)));
    }
}
