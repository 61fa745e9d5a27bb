//! Responses of expensive calls (an LLM's answer to one request), kept by the blake3 of a
//! canonical pre-image of the call, shared by every stage and surviving failed and killed
//! attempts: a stage that dies halfway keeps what it already obtained, and a stage whose key
//! changed (one prompt edited) pays only for the calls that changed.
//!
//! `memo/<xx>/<key>`: the value's blake3 in hex, a newline, the value. Written by rename, so a
//! reader sees a whole entry or none; an entry whose bytes no longer match is a miss.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::{key_of, Digest};

static PART_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Debug)]
pub struct Memo {
    dir: PathBuf,
}

impl Memo {
    pub fn new(dir: impl Into<PathBuf>) -> Memo {
        Memo { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of a call: every field that can change its response (for an LLM: the endpoint or
    /// model identity, the messages, the sampling parameters).
    pub fn key(preimage: &Value) -> Digest {
        key_of(preimage)
    }

    fn path(&self, key: &Digest) -> PathBuf {
        let hex = key.hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// The stored value, if there is an intact one.
    pub fn get(&self, key: &Digest) -> Option<Vec<u8>> {
        let path = self.path(key);
        let bytes = fs::read(&path).ok()?;
        let split = bytes.iter().position(|&b| b == b'\n')?;
        let (head, value) = (&bytes[..split], &bytes[split + 1..]);
        if head == Digest::of_bytes(value).hex().as_bytes() {
            Some(value.to_vec())
        } else {
            let _ = fs::remove_file(&path);
            None
        }
    }

    /// Stores a value; concurrent writers of one key write the same bytes, and the last rename
    /// wins.
    pub fn put(&self, key: &Digest, value: &[u8]) -> io::Result<()> {
        let path = self.path(key);
        let parent = path.parent().expect("memo paths have parents");
        fs::create_dir_all(parent)?;
        let part = parent.join(format!(
            ".{}.{}.{}",
            key.hex(),
            std::process::id(),
            PART_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut bytes = Digest::of_bytes(value).hex().into_bytes();
        bytes.push(b'\n');
        bytes.extend_from_slice(value);
        fs::write(&part, bytes)?;
        fs::rename(&part, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_comes_back_and_a_damaged_one_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let memo = Memo::new(dir.path());
        let key = Memo::key(&serde_json::json!({"messages": ["hi"], "temperature": 0.0}));
        assert_eq!(memo.get(&key), None);
        memo.put(&key, b"hello").unwrap();
        assert_eq!(memo.get(&key).as_deref(), Some(&b"hello"[..]));
        let path = memo.path(&key);
        let mut bytes = fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() = b'X';
        fs::write(&path, bytes).unwrap();
        assert_eq!(memo.get(&key), None);
        assert!(!path.exists(), "a damaged entry is removed");
    }

    #[test]
    fn the_key_does_not_depend_on_field_order() {
        let a = serde_json::json!({"model": "m", "temperature": 0.2});
        let b: Value = serde_json::from_str(r#"{"temperature": 0.2, "model": "m"}"#).unwrap();
        assert_eq!(Memo::key(&a), Memo::key(&b));
    }
}
