use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;

use rayon::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Files at least this large are memory-mapped and hashed on all cores.
const PARALLEL_THRESHOLD: u64 = 8 << 20;

/// A blake3 digest, shown as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Digest(*blake3::hash(bytes).as_bytes())
    }
    pub fn hex(&self) -> String {
        blake3::Hash::from(self.0).to_hex().to_string()
    }
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not a 64-character hex digest: {0:?}")]
pub struct DigestParseError(String);

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        blake3::Hash::from_hex(s)
            .map(|h| Digest(*h.as_bytes()))
            .map_err(|_| DigestParseError(s.to_string()))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes one file's bytes; large files are mapped and hashed in parallel.
pub fn hash_file(path: &Path) -> std::io::Result<Digest> {
    let len = std::fs::metadata(path)?.len();
    let mut hasher = blake3::Hasher::new();
    if len >= PARALLEL_THRESHOLD {
        hasher.update_mmap_rayon(path)?;
    } else {
        let mut file = File::open(path)?;
        let mut buf = vec![0u8; len.clamp(1, 1 << 20) as usize];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(Digest(*hasher.finalize().as_bytes()))
}

/// Digest of a file or directory tree. The pre-image is a listing of every entry in byte order
/// of its relative path: directories, and files with their executable bit, size and content
/// digest. Names of the root itself do not count, so a tree hashes the same wherever it lies.
/// Symbolic links are rejected: an artifact must be self-contained.
pub fn hash_path(root: &Path) -> std::io::Result<Digest> {
    hash_tree_with(root, &|path, _| hash_file(path))
}

/// A file's content digest, given its path and metadata.
pub(crate) type FileDigest<'a> = dyn Fn(&Path, &std::fs::Metadata) -> std::io::Result<Digest> + Sync + 'a;

/// [`hash_path`], taking each file's content digest from `file_digest`.
pub(crate) fn hash_tree_with(root: &Path, file_digest: &FileDigest) -> std::io::Result<Digest> {
    let meta = std::fs::symlink_metadata(root)?;
    if meta.is_file() {
        let mut listing = Vec::new();
        push_file_line(&mut listing, "", &meta, file_digest(root, &meta)?);
        return Ok(Digest::of_bytes(&listing));
    }
    let mut entries = Vec::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walkdir yields paths under its root")
            .to_str()
            .ok_or_else(|| std::io::Error::other(format!("non-UTF-8 path {}", entry.path().display())))?
            .to_string();
        let ft = entry.file_type();
        if ft.is_symlink() {
            return Err(std::io::Error::other(format!(
                "{} is a symbolic link; artifacts must contain plain files only",
                entry.path().display()
            )));
        }
        entries.push((rel, ft.is_dir(), entry.into_path()));
    }
    // walkdir sorts siblings, not full paths; sort by the whole relative path for a canonical order.
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let lines: Vec<Vec<u8>> = entries
        .par_iter()
        .map(|(rel, is_dir, path)| -> std::io::Result<Vec<u8>> {
            let mut line = Vec::new();
            if *is_dir {
                line.extend_from_slice(b"D ");
                line.extend_from_slice(rel.as_bytes());
                line.push(b'\n');
            } else {
                let meta = std::fs::metadata(path)?;
                push_file_line(&mut line, rel, &meta, file_digest(path, &meta)?);
            }
            Ok(line)
        })
        .collect::<std::io::Result<_>>()?;
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"secvec-tree-v1\n");
    for line in &lines {
        hasher.update(line);
    }
    Ok(Digest(*hasher.finalize().as_bytes()))
}

fn push_file_line(out: &mut Vec<u8>, rel: &str, meta: &std::fs::Metadata, digest: Digest) {
    let exec = meta.permissions().mode() & 0o111 != 0;
    out.extend_from_slice(b"F ");
    out.extend_from_slice(rel.as_bytes());
    out.push(0);
    out.extend_from_slice(format!("{} {} {}\n", u8::from(exec), meta.len(), digest.hex()).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_digest_depends_on_content_and_names_not_location() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            std::fs::create_dir(d.join("sub")).unwrap();
            std::fs::write(d.join("sub/x.txt"), "hello").unwrap();
            std::fs::write(d.join("y.txt"), "world").unwrap();
        }
        assert_eq!(hash_path(a.path()).unwrap(), hash_path(b.path()).unwrap());
        std::fs::write(b.path().join("y.txt"), "World").unwrap();
        assert_ne!(hash_path(a.path()).unwrap(), hash_path(b.path()).unwrap());
        std::fs::write(b.path().join("y.txt"), "world").unwrap();
        std::fs::rename(b.path().join("y.txt"), b.path().join("z.txt")).unwrap();
        assert_ne!(hash_path(a.path()).unwrap(), hash_path(b.path()).unwrap());
    }

    #[test]
    fn large_file_hash_matches_serial_blake3() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let data: Vec<u8> = (0..(PARALLEL_THRESHOLD as usize + 12345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        assert_eq!(hash_file(&path).unwrap(), Digest::of_bytes(&data));
    }

    #[test]
    fn digest_round_trips_through_hex() {
        let d = Digest::of_bytes(b"abc");
        assert_eq!(d.hex().parse::<Digest>().unwrap(), d);
        assert!("xyz".parse::<Digest>().is_err());
    }
}
