//! Safetensors weights (one file or index-sharded) read straight into libtorch tensors: each
//! tensor is read from the file into its own buffer, so loading never holds two copies of the
//! weights in host memory.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype as StDtype, Metadata};
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid safetensors file ({what}); re-download or re-export it")]
    Corrupt { path: PathBuf, what: String },
    #[error("{path}: tensor `{name}` runs past the end of the file (truncated?)")]
    Truncated { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has unsupported dtype {dtype:?}")]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: StDtype,
    },
    #[error("no *.safetensors weights in {0}")]
    NoWeights(PathBuf),
    #[error("{dir}: missing tensor `{name}`")]
    Missing { dir: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {want:?}")]
    Shape {
        path: PathBuf,
        name: String,
        got: Vec<i64>,
        want: Vec<i64>,
    },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// A tensor's name, dtype and shape as a weights file stores it.
pub type StoredTensor<'a> = (&'a str, StDtype, &'a [i64]);

struct Entry {
    file: usize,
    dtype: StDtype,
    shape: Vec<i64>,
    start: u64,
    end: u64,
}

/// An index of every tensor in a model directory; tensors are read on demand.
pub struct Weights {
    dir: PathBuf,
    files: Vec<(PathBuf, File)>,
    entries: HashMap<String, Entry>,
}

fn kind_of(dtype: StDtype) -> Option<Kind> {
    Some(match dtype {
        StDtype::F32 => Kind::Float,
        StDtype::F16 => Kind::Half,
        StDtype::BF16 => Kind::BFloat16,
        StDtype::F64 => Kind::Double,
        StDtype::I64 => Kind::Int64,
        StDtype::I32 => Kind::Int,
        StDtype::U8 => Kind::Uint8,
        StDtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

impl Weights {
    /// Indexes `model.safetensors`, or the shards named by `model.safetensors.index.json`, or
    /// every `*.safetensors` file in `dir`.
    pub fn open(dir: &Path) -> Result<Weights, WeightsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WeightsError::Io { path, source }
        };
        let index = dir.join("model.safetensors.index.json");
        let mut names: Vec<PathBuf> = if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(io(&index))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| WeightsError::Corrupt {
                path: index.clone(),
                what: e.to_string(),
            })?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| WeightsError::Corrupt {
                    path: index.clone(),
                    what: "no weight_map".into(),
                })?;
            let mut files: Vec<PathBuf> = map.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect();
            files.sort();
            files.dedup();
            files
        } else {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io(dir))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                .collect();
            files.sort();
            files
        };
        if names.is_empty() {
            return Err(WeightsError::NoWeights(dir.to_path_buf()));
        }
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (i, path) in names.drain(..).enumerate() {
            let file = File::open(&path).map_err(io(&path))?;
            let len = file.metadata().map_err(io(&path))?.len();
            let corrupt = |what: String| WeightsError::Corrupt {
                path: path.clone(),
                what,
            };
            let mut n = [0u8; 8];
            file.read_exact_at(&mut n, 0)
                .map_err(|_| corrupt("shorter than its 8-byte header length".into()))?;
            let header_len = u64::from_le_bytes(n);
            if header_len > len.saturating_sub(8) || header_len > 100 << 20 {
                return Err(corrupt(format!(
                    "header length {header_len} does not fit the {len}-byte file"
                )));
            }
            let mut header = vec![0u8; header_len as usize];
            file.read_exact_at(&mut header, 8).map_err(io(&path))?;
            let meta: Metadata = serde_json::from_slice(&header).map_err(|e| corrupt(format!("bad header: {e}")))?;
            let base = 8 + header_len;
            for (name, info) in meta.tensors() {
                let (start, end) = (base + info.data_offsets.0 as u64, base + info.data_offsets.1 as u64);
                if end > len {
                    return Err(WeightsError::Truncated {
                        path: path.clone(),
                        name,
                    });
                }
                let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
                let elems: u64 = info.shape.iter().map(|&d| d as u64).product();
                if elems * info.dtype.size() as u64 != end - start {
                    return Err(corrupt(format!(
                        "tensor `{name}` size does not match its shape {shape:?}"
                    )));
                }
                entries.insert(
                    name.clone(),
                    Entry {
                        file: i,
                        dtype: info.dtype,
                        shape,
                        start,
                        end,
                    },
                );
            }
            files.push((path, file));
        }
        Ok(Weights {
            dir: dir.to_path_buf(),
            files,
            entries,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Reads one tensor, checks its shape, and returns it in `kind` on `device`.
    pub fn get(&self, name: &str, want: &[i64], kind: Kind, device: Device) -> Result<Tensor, WeightsError> {
        let e = self.entries.get(name).ok_or_else(|| WeightsError::Missing {
            dir: self.dir.clone(),
            name: name.to_string(),
        })?;
        let (path, file) = &self.files[e.file];
        if e.shape != want {
            return Err(WeightsError::Shape {
                path: path.clone(),
                name: name.into(),
                got: e.shape.clone(),
                want: want.to_vec(),
            });
        }
        let stored = kind_of(e.dtype).ok_or_else(|| WeightsError::Dtype {
            path: path.clone(),
            name: name.into(),
            dtype: e.dtype,
        })?;
        let t = Tensor::empty(e.shape.as_slice(), (stored, Device::Cpu));
        let bytes = (e.end - e.start) as usize;
        // SAFETY: `t` is a fresh contiguous CPU tensor of exactly `bytes` bytes, owned here.
        let buf = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, bytes) };
        file.read_exact_at(buf, e.start).map_err(|source| WeightsError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(if stored == kind && device == Device::Cpu {
            t
        } else {
            t.f_to_device(device)?.f_to_kind(kind)?
        })
    }

    /// Each weights file with its tensors, in file order.
    pub fn by_file(&self) -> Vec<(&Path, Vec<StoredTensor<'_>>)> {
        let mut out: Vec<(&Path, Vec<StoredTensor>)> =
            self.files.iter().map(|(p, _)| (p.as_path(), Vec::new())).collect();
        for (name, e) in &self.entries {
            out[e.file].1.push((name, e.dtype, &e.shape));
        }
        for (_, tensors) in &mut out {
            tensors.sort_by_key(|t| t.0);
        }
        out
    }

    /// One tensor as stored.
    pub fn get_stored(&self, name: &str) -> Result<Tensor, WeightsError> {
        let e = self.entries.get(name).ok_or_else(|| WeightsError::Missing {
            dir: self.dir.clone(),
            name: name.to_string(),
        })?;
        let kind = kind_of(e.dtype).ok_or_else(|| WeightsError::Dtype {
            path: self.files[e.file].0.clone(),
            name: name.into(),
            dtype: e.dtype,
        })?;
        self.get(name, &e.shape.clone(), kind, Device::Cpu)
    }

    /// Every tensor, as stored (for adapters and task vectors).
    pub fn all(&self, device: Device) -> Result<BTreeMap<String, Tensor>, WeightsError> {
        self.entries
            .iter()
            .map(|(name, e)| {
                let kind = kind_of(e.dtype).unwrap_or(Kind::Float);
                Ok((name.clone(), self.get(name, &e.shape.clone(), kind, device)?))
            })
            .collect()
    }
}
