//! The libtorch device a manifest's device name ([`Device`]) stands for.

pub use secvec_stage::{Device, DeviceError};

/// The libtorch device `name` (`cpu`, `cuda`, `cuda:N`, `auto`) stands for on this machine.
pub fn parse_device(name: &str) -> Result<tch::Device, DeviceError> {
    // Counting GPUs loads the CUDA backend, which takes seconds: only when one may be used.
    let cuda_devices = match name.parse()? {
        Device::Cpu => 0,
        _ => {
            load_cuda_backend();
            if tch::Cuda::is_available() {
                tch::Cuda::device_count() as usize
            } else {
                0
            }
        }
    };
    Ok(match Device::settle(name, cuda_devices)? {
        Device::Cuda(i) => tch::Device::Cuda(i),
        _ => tch::Device::Cpu,
    })
}

/// Loads libtorch's CUDA backend, which registers itself with libtorch when loaded. The linker
/// drops `libtorch_cuda.so` (no symbol of it is referenced), and loading it costs seconds, so
/// it is loaded only before a device query. Loading it twice is harmless.
pub fn load_cuda_backend() {
    let path = libtorch_dir().join("libtorch_cuda.so");
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

/// The folder of the `libtorch_cpu.so` this process loaded: the CUDA backend must come from the
/// same libtorch, which is not the build machine's when the binary was moved (the GPU bundle
/// runs against the host's torch through LD_LIBRARY_PATH). The build's folder where none is
/// mapped.
pub fn libtorch_dir() -> std::path::PathBuf {
    loaded_libtorch_dir().unwrap_or_else(|| env!("SECVEC_LIBTORCH_LIB").into())
}

fn loaded_libtorch_dir() -> Option<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(std::path::Path::new)
        .find(|path| path.file_name().is_some_and(|n| n == "libtorch_cpu.so"))
        .and_then(|path| path.parent())
        .map(std::path::Path::to_path_buf)
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
            assert!(err.contains("libtorch sees 0 CUDA device(s)"), "{err}");
        }
    }

    #[test]
    fn finds_the_folder_of_the_libtorch_it_loaded() {
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        let dir = loaded_libtorch_dir().expect("libtorch_cpu.so is mapped");
        let built = std::path::Path::new(env!("SECVEC_LIBTORCH_LIB"));
        assert_eq!(dir.canonicalize().unwrap(), built.canonicalize().unwrap());
    }
}

/// The libtorch kind of a manifest dtype.
pub fn kind_of(dtype: secvec_stage::Dtype) -> tch::Kind {
    match dtype {
        secvec_stage::Dtype::F32 => tch::Kind::Float,
        secvec_stage::Dtype::Bf16 => tch::Kind::BFloat16,
        secvec_stage::Dtype::F16 => tch::Kind::Half,
    }
}
