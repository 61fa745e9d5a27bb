//! GGUF files (llama.cpp's format, version 2 and 3): metadata and tensors, dequantised to f32.
//! Supported tensor types: F32, F16, BF16, Q4_0, Q4_1 and Q8_0.

pub mod dequant;
pub mod hf;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {what}")]
    Format { path: PathBuf, what: String },
    #[error("{path}: tensor `{name}` has GGML type {ty}, which secvec cannot dequantise (it reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K and Q6_K)")]
    Type { path: PathBuf, name: String, ty: u32 },
    #[error("{path}: metadata `{key}` {what}")]
    Metadata { path: PathBuf, key: String, what: String },
    #[error("{path}: tensor `{name}`'s data {what}")]
    TensorData { path: PathBuf, name: String, what: String },
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Uint(u) => Some(u),
            Value::Int(i) => u64::try_from(i).ok(),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(f) => Some(f),
            Value::Uint(u) => Some(u as f64),
            Value::Int(i) => Some(i as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

pub struct TensorInfo {
    /// GGML order: `dims[0]` is the fastest-varying (a linear layer's input width).
    pub dims: Vec<u64>,
    pub ty: u32,
    /// From the start of the data section.
    pub offset: u64,
}

/// An opened GGUF file: its metadata and tensor directory; tensor data is read on demand.
pub struct Gguf {
    pub path: PathBuf,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: BTreeMap<String, TensorInfo>,
    map: memmap2::Mmap,
    data_start: usize,
}

/// A little-endian cursor over the file that reports where it ran out.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], GgufError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| GgufError::Format {
                path: self.path.to_path_buf(),
                what: format!("ends at byte {} inside its header (truncated?)", self.bytes.len()),
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn len(&mut self) -> Result<usize, GgufError> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len())
            .ok_or_else(|| GgufError::Format {
                path: self.path.to_path_buf(),
                what: format!("a length of {n} at byte {} exceeds the file", self.at - 8),
            })
    }
    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.len()?;
        let at = self.at;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| GgufError::Format {
            path: self.path.to_path_buf(),
            what: format!("the string at byte {at} is not UTF-8"),
        })
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::Uint(self.take(1)?[0] as u64),
            1 => Value::Int(self.take(1)?[0] as i8 as i64),
            2 => Value::Uint(u16::from_le_bytes(self.take(2)?.try_into().expect("2")) as u64),
            3 => Value::Int(i16::from_le_bytes(self.take(2)?.try_into().expect("2")) as i64),
            4 => Value::Uint(self.u32()? as u64),
            5 => Value::Int(self.u32()? as i32 as i64),
            6 => Value::Float(f32::from_le_bytes(self.take(4)?.try_into().expect("4")) as f64),
            7 => Value::Bool(self.take(1)?[0] != 0),
            8 => Value::Str(self.string()?),
            // Arrays of arrays nest; a hostile file could nest them deep enough to exhaust the stack.
            9 if depth >= 4 => {
                return Err(GgufError::Format {
                    path: self.path.to_path_buf(),
                    what: format!("metadata arrays nested deeper than 4 at byte {}", self.at),
                })
            }
            9 => {
                let inner = self.u32()?;
                let n = self.len()?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(inner, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::Uint(self.u64()?),
            11 => Value::Int(self.u64()? as i64),
            12 => Value::Float(f64::from_le_bytes(self.take(8)?.try_into().expect("8"))),
            other => {
                return Err(GgufError::Format {
                    path: self.path.to_path_buf(),
                    what: format!("unknown metadata value type {other} at byte {}", self.at - 4),
                })
            }
        })
    }
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Gguf, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: read-only map of a file the stage reads as an immutable input.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let format = |what: String| GgufError::Format {
            path: path.to_path_buf(),
            what,
        };
        let mut r = Reader {
            bytes: &map,
            at: 0,
            path,
        };
        if r.take(4)? != b"GGUF" {
            return Err(format("not a GGUF file (no GGUF magic)".into()));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(format(format!("GGUF version {version}; secvec reads versions 2 and 3")));
        }
        let (n_tensors, n_kv) = (r.len()?, r.len()?);
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            metadata.insert(key, r.value(ty, 0)?);
        }
        let mut tensors = BTreeMap::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims > 4 {
                return Err(format(format!("tensor `{name}` has {n_dims} dimensions")));
            }
            let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
            let ty = r.u32()?;
            let offset = r.u64()?;
            tensors.insert(name, TensorInfo { dims, ty, offset });
        }
        let alignment = metadata.get("general.alignment").and_then(Value::as_u64).unwrap_or(32) as usize;
        let data_start = r.at.div_ceil(alignment.max(1)) * alignment.max(1);
        let gguf = Gguf {
            path: path.to_path_buf(),
            metadata,
            tensors,
            data_start,
            map,
        };
        let tensor_data = |name: &str, what: String| GgufError::TensorData {
            path: path.to_path_buf(),
            name: name.to_string(),
            what,
        };
        let mut ranges = Vec::with_capacity(gguf.tensors.len());
        for (name, info) in &gguf.tensors {
            let size = gguf.byte_size(name, info)? as u64;
            let start = (gguf.data_start as u64).checked_add(info.offset);
            match start.and_then(|s| Some((s, s.checked_add(size)?))) {
                Some((start, end)) if end <= gguf.map.len() as u64 => ranges.push((start, end, name)),
                _ => return Err(tensor_data(name, "runs past the end of the file (truncated?)".into())),
            }
        }
        // Each tensor owns its bytes. Aliased ranges would let a small file declare any amount of
        // data (300 tensors at offset 0), and an import's memory follows what is declared.
        ranges.sort();
        for pair in ranges.windows(2) {
            let ((a_start, a_end, a), (b_start, b_end, b)) = (pair[0], pair[1]);
            if b_start < a_end {
                return Err(tensor_data(
                    b,
                    format!(
                        "(bytes {b_start}..{b_end}) overlaps tensor `{a}`'s (bytes {a_start}..{a_end}); \
                         a GGUF stores each tensor in its own bytes"
                    ),
                ));
            }
        }
        Ok(gguf)
    }

    /// The bytes tensor `name` takes; its element count must not overflow.
    fn byte_size(&self, name: &str, info: &TensorInfo) -> Result<usize, GgufError> {
        let n = info
            .dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .ok_or_else(|| GgufError::Format {
                path: self.path.clone(),
                what: format!("tensor `{name}` has dimensions {:?} too large to hold", info.dims),
            })?;
        dequant::byte_size(info.ty, n).ok_or_else(|| self.type_error(name, info.ty))
    }

    fn type_error(&self, name: &str, ty: u32) -> GgufError {
        GgufError::Type {
            path: self.path.clone(),
            name: name.to_string(),
            ty,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A metadata value that must be there.
    pub fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            what: "is missing".into(),
        })
    }

    /// Tensor `name`'s values dequantised to f32, row-major in PyTorch order (`[out, in]`).
    pub fn values(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self.tensors.get(name).ok_or_else(|| GgufError::Format {
            path: self.path.clone(),
            what: format!("no tensor `{name}`"),
        })?;
        // Sizes and offsets were checked against the file when it was opened.
        let size = self.byte_size(name, info)?;
        let n: u64 = info.dims.iter().product();
        let start = self.data_start + info.offset as usize;
        dequant::to_f32(info.ty, &self.map[start..start + size], n as usize)
            .ok_or_else(|| self.type_error(name, info.ty))
    }
}

#[cfg(test)]
pub(super) mod tests {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    /// A GGUF (version 3) written by hand: metadata, a tensor directory and a data section.
    #[derive(Default)]
    pub(in crate::gguf) struct File {
        kv: Vec<u8>,
        n_kv: u64,
        directory: Vec<u8>,
        n_tensors: u64,
        pub(in crate::gguf) data: Vec<u8>,
    }

    impl File {
        pub(in crate::gguf) fn str(&mut self, key: &str, value: &str) {
            string(&mut self.kv, key);
            self.kv.extend(8u32.to_le_bytes());
            string(&mut self.kv, value);
            self.n_kv += 1;
        }

        pub(in crate::gguf) fn u32(&mut self, key: &str, value: u32) {
            string(&mut self.kv, key);
            self.kv.extend(4u32.to_le_bytes());
            self.kv.extend(value.to_le_bytes());
            self.n_kv += 1;
        }

        pub(in crate::gguf) fn strs(&mut self, key: &str, values: &[&str]) {
            string(&mut self.kv, key);
            self.kv.extend(9u32.to_le_bytes());
            self.kv.extend(8u32.to_le_bytes());
            self.kv.extend((values.len() as u64).to_le_bytes());
            for v in values {
                string(&mut self.kv, v);
            }
            self.n_kv += 1;
        }

        /// A directory entry pointing anywhere in the data section (GGML order of `dims`).
        pub(in crate::gguf) fn entry(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) {
            string(&mut self.directory, name);
            self.directory.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                self.directory.extend(d.to_le_bytes());
            }
            self.directory.extend(ty.to_le_bytes());
            self.directory.extend(offset.to_le_bytes());
            self.n_tensors += 1;
        }

        /// An F32 tensor with its own bytes at the end of the data section.
        pub(in crate::gguf) fn f32(&mut self, name: &str, dims: &[u64], values: &[f32]) {
            self.entry(name, dims, 0, self.data.len() as u64);
            self.data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        }

        pub(in crate::gguf) fn bytes(&self) -> Vec<u8> {
            let mut b = b"GGUF".to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend(self.n_tensors.to_le_bytes());
            b.extend(self.n_kv.to_le_bytes());
            b.extend(&self.kv);
            b.extend(&self.directory);
            // The data section starts at the default alignment, 32.
            b.resize(b.len().next_multiple_of(32), 0);
            b.extend(&self.data);
            b
        }
    }

    fn open(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, bytes).unwrap();
        match super::Gguf::open(&path) {
            Ok(_) => "opened".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn hostile_headers_are_refused_not_followed() {
        // One tensor whose dimensions overflow any size.
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        string(&mut b, "t");
        b.extend(2u32.to_le_bytes());
        b.extend(u64::MAX.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        assert!(open(&b).contains("too large to hold"), "{}", open(&b));
        // Metadata arrays nested past the limit.
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        string(&mut b, "k");
        b.extend(9u32.to_le_bytes());
        for _ in 0..6 {
            b.extend(9u32.to_le_bytes());
            b.extend(1u64.to_le_bytes());
        }
        assert!(open(&b).contains("nested deeper than 4"), "{}", open(&b));
    }

    #[test]
    fn tensors_must_own_their_bytes_inside_the_file() {
        // 300 tensors of 1 MiB each, all declared at offset 0 of one 1 MiB data section: an
        // import that trusted them would hold 300 MiB for a 1 MiB file.
        let mut f = File {
            data: vec![0; 1 << 20],
            ..File::default()
        };
        for i in 0..300 {
            f.entry(&format!("blk.{i}.ffn_up.weight"), &[1 << 18], 0, 0);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, f.bytes()).unwrap();
        let err = super::Gguf::open(&path).err().expect("aliased tensors are refused");
        let super::GgufError::TensorData { name, what, .. } = &err else {
            panic!("{err}")
        };
        assert!(
            name.starts_with("blk.") && what.contains("overlaps tensor `blk."),
            "{err}"
        );
        // Tensors one after another are fine; one reaching past the end of the file is not.
        let mut f = File::default();
        f.f32("a", &[2], &[1.0, 2.0]);
        f.f32("b", &[3], &[3.0, 4.0, 5.0]);
        assert_eq!(open(&f.bytes()), "opened");
        f.entry("c", &[4], 0, 16);
        assert!(
            open(&f.bytes()).ends_with("tensor `c`'s data runs past the end of the file (truncated?)"),
            "{}",
            open(&f.bytes())
        );
        // Overlapping only partly is aliasing too.
        let mut f = File::default();
        f.f32("a", &[4], &[1.0, 2.0, 3.0, 4.0]);
        f.entry("b", &[2], 0, 8);
        assert!(
            open(&f.bytes()).ends_with(
                "tensor `b`'s data (bytes 104..112) overlaps tensor `a`'s (bytes 96..112); \
                 a GGUF stores each tensor in its own bytes"
            ),
            "{}",
            open(&f.bytes())
        );
    }
}
