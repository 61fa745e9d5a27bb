//! Devices as manifests name them.

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`; use cpu, cuda, cuda:N or auto")]
    Unknown(String),
    #[error("device `{0}` was requested but this machine has no usable CUDA device (libtorch sees {1}); use `cpu` or `auto`")]
    NoCuda(String, usize),
}

/// Parses `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available, else CPU).
pub fn parse_device(name: &str) -> Result<tch::Device, DeviceError> {
    let cuda_count = || {
        load_cuda_backend();
        if tch::Cuda::is_available() {
            tch::Cuda::device_count() as usize
        } else {
            0
        }
    };
    match name {
        "cpu" => Ok(tch::Device::Cpu),
        "auto" => Ok(if cuda_count() > 0 {
            tch::Device::Cuda(0)
        } else {
            tch::Device::Cpu
        }),
        "cuda" => parse_device("cuda:0"),
        _ => {
            let index: usize = name
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| DeviceError::Unknown(name.to_string()))?;
            let n = cuda_count();
            if index >= n {
                return Err(DeviceError::NoCuda(name.to_string(), n));
            }
            Ok(tch::Device::Cuda(index))
        }
    }
}

/// Loads libtorch's CUDA backend, which registers itself with libtorch when loaded. The linker
/// drops `libtorch_cuda.so` (no symbol of it is referenced), and loading it costs seconds, so
/// it is loaded only before a device query. Loading it twice is harmless.
pub fn load_cuda_backend() {
    let path = std::path::Path::new(env!("SECVEC_LIBTORCH_LIB")).join("libtorch_cuda.so");
    if path.exists() {
        // SAFETY: loading a library runs its initialisers, which only register CUDA kernels.
        let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
        match unsafe { libloading::os::unix::Library::open(Some(&path), flags) } {
            // Kept for the life of the process: its kernels stay registered.
            Ok(lib) => std::mem::forget(lib),
            Err(e) => eprintln!("secvec: CUDA backend not loaded: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_refuses_cuda_without_cuda() {
        assert_eq!(parse_device("cpu").unwrap(), tch::Device::Cpu);
        assert!(matches!(parse_device("tpu"), Err(DeviceError::Unknown(_))));
        if !tch::Cuda::is_available() {
            assert_eq!(parse_device("auto").unwrap(), tch::Device::Cpu);
            let err = parse_device("cuda:1").unwrap_err().to_string();
            assert!(err.contains("no usable CUDA device"), "{err}");
        }
    }
}
