//! Devices and dtypes as manifests name them, settled against this machine before a model
//! stage is hashed: `auto` becomes the device the stage will really use, and the key records
//! libtorch's version and the GPU model, whose arithmetic differs.

use schemars::JsonSchema;
use secvec_stage::Resources;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::worker::torch_info;

/// Floating-point types a model may run in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    F32,
    Bf16,
    F16,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`; use cpu, cuda, cuda:N or auto")]
    Unknown(String),
    #[error("device `{0}` was requested but libtorch sees {1} CUDA device(s) here; use `cpu` or `auto`")]
    NoCuda(String, usize),
    #[error("cannot ask libtorch which devices this machine has: {0}")]
    Probe(String),
}

/// Resolves `device` in place (`auto` → `cuda:0` or `cpu`, `cuda` → `cuda:0`) and returns the
/// environment the stage depends on: libtorch's version, and the GPU's model on CUDA.
pub fn settle(device: &mut String) -> Result<Value, DeviceError> {
    let info = torch_info().map_err(DeviceError::Probe)?;
    let index = match device.as_str() {
        "cpu" => None,
        "auto" => (info.cuda_devices > 0).then_some(0),
        "cuda" => Some(0),
        other => Some(
            other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| DeviceError::Unknown(other.to_string()))?,
        ),
    };
    match index {
        None => {
            *device = "cpu".into();
            Ok(json!({"torch": info.torch}))
        }
        Some(i) if i >= info.cuda_devices => Err(DeviceError::NoCuda(device.clone(), info.cuda_devices)),
        Some(i) => {
            *device = format!("cuda:{i}");
            Ok(json!({"torch": info.torch, "gpu": gpu_models().get(i).cloned().unwrap_or_default()}))
        }
    }
}

/// What a stage on a settled `device` occupies: one GPU slot on CUDA; on the CPU every core,
/// since libtorch's threads use them all and two such stages side by side would oversubscribe
/// them.
pub fn resources(device: &str) -> Resources {
    match device.starts_with("cuda") {
        true => Resources::gpus(1),
        false => Resources::cpus(u32::MAX),
    }
}

/// NVIDIA GPU models in PCI bus order, as the driver lists them (CUDA's default order matches
/// it on machines with one model of GPU, the only kind a stage's key can tell apart anyway).
fn gpu_models() -> Vec<String> {
    let mut gpus: Vec<(String, String)> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("information")).ok()?;
            let model = text.lines().find_map(|l| l.strip_prefix("Model:"))?.trim().to_string();
            Some((e.file_name().to_string_lossy().to_string(), model))
        })
        .collect();
    gpus.sort();
    gpus.into_iter().map(|(_, m)| m).collect()
}
