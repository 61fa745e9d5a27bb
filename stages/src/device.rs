//! Devices as manifests name them ([`Device`]), settled against this machine before a model
//! stage is hashed: `auto` becomes the device the stage will really use, and the key records
//! libtorch's version and the GPU model, whose arithmetic differs.

use std::process::{Command, Stdio};

use secvec_stage::worker::{tail, worker_path, TorchInfo};
use secvec_stage::{Device, DeviceError, Resources};
use serde_json::{json, Value};

/// Resolves `device` in place (`auto` → `cuda:0` or `cpu`, `cuda` → `cuda:0`) and returns the
/// environment the stage depends on: libtorch's version, and the GPU's model on CUDA.
pub fn settle(device: &mut String) -> Result<Value, DeviceError> {
    let info = torch_info().map_err(DeviceError::Probe)?;
    let settled = Device::settle(device, info.cuda_devices)?;
    *device = settled.to_string();
    Ok(match settled {
        Device::Cuda(i) => json!({"torch": info.torch, "gpu": gpu_models().get(i).cloned().unwrap_or_default()}),
        _ => json!({"torch": info.torch}),
    })
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

/// libtorch's version and CUDA devices, asked of the worker (remembered while it is unchanged).
pub fn torch_info() -> Result<TorchInfo, String> {
    let exe = worker_path().map_err(|e| e.to_string())?;
    secvec_score::toolchain::remembered("devices", &exe, |_| {
        let probe = |what: String| secvec_score::toolchain::ToolError::Probe {
            path: exe.clone(),
            what,
        };
        let out = Command::new(&exe)
            .arg("devices")
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| probe(e.to_string()))?;
        if !out.status.success() {
            return Err(probe(format!(
                "{}: {}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 2000)
            )));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| probe(e.to_string()))
    })
    .map_err(|e| e.to_string())
}
