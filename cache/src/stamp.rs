//! File stamps: size, mtime, ctime and inode, which change whenever a file is written, replaced,
//! touched or re-permissioned (ctime cannot be set back, even by root). They let the cache tell
//! cheaply that a stored tree or an input file is unchanged, as git's index and DVC do, without
//! reading its bytes.
//!
//! File times tick with the kernel's clock, so a file stamped within [`RACY_NS`] of the moment
//! its stamp was taken could change again without a new stamp; such a stamp is never trusted
//! (the bytes are hashed instead).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::digest::{hash_file, hash_tree_with, Digest};

/// Longer than any kernel clock tick.
pub const RACY_NS: i128 = 100_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub inode: u64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            inode: meta.ino(),
        }
    }

    pub fn read(path: &Path) -> std::io::Result<Stamp> {
        Ok(Stamp::of(&std::fs::metadata(path)?))
    }

    /// Whether the file may have changed in the same clock tick the stamp was taken in.
    pub fn racy(&self, taken_ns: i128) -> bool {
        self.mtime_ns.max(self.ctime_ns) >= taken_ns - RACY_NS
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default()
}

/// The stamps of every entry of a stored tree, taken when it was committed.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeStamps {
    pub taken_ns: i128,
    /// Relative path ("" for the root) and stamp, in walk order.
    pub entries: Vec<(String, Stamp)>,
}

impl TreeStamps {
    pub fn of(root: &Path) -> std::io::Result<TreeStamps> {
        let taken_ns = now_ns();
        let mut entries = Vec::new();
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            let entry = entry.map_err(std::io::Error::other)?;
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            let meta = entry.metadata().map_err(std::io::Error::other)?;
            entries.push((rel.to_string_lossy().to_string(), Stamp::of(&meta)));
        }
        Ok(TreeStamps { taken_ns, entries })
    }

    /// What changed between these stamps and `now` (taken later), in words: removed, then
    /// added, then modified files, then the folders (whose times change with any of those).
    /// `None` when every stamp is the same and none is racy.
    pub fn changed(&self, now: &TreeStamps) -> Option<String> {
        let name = |rel: &str| match rel {
            "" => "the folder itself".to_string(),
            rel => format!("`{rel}`"),
        };
        let before: HashMap<&str, &Stamp> = self.entries.iter().map(|(r, s)| (r.as_str(), s)).collect();
        let after: HashMap<&str, &Stamp> = now.entries.iter().map(|(r, s)| (r.as_str(), s)).collect();
        let removed = self.entries.iter().find(|(rel, _)| !after.contains_key(rel.as_str()));
        if let Some((rel, _)) = removed {
            return Some(format!("{} was removed", name(rel)));
        }
        let added = now.entries.iter().find(|(rel, _)| !before.contains_key(rel.as_str()));
        if let Some((rel, _)) = added {
            return Some(format!("{} was added", name(rel)));
        }
        let (folders, files): (Vec<_>, Vec<_>) = self.entries.iter().partition(|(rel, _)| rel.is_empty());
        files.into_iter().chain(folders).find_map(|(rel, old)| {
            let new = after[rel.as_str()];
            if new.size != old.size {
                Some(format!(
                    "{} changed size ({} → {} bytes)",
                    name(rel),
                    old.size,
                    new.size
                ))
            } else if new != old {
                Some(format!("{} was modified", name(rel)))
            } else if old.racy(self.taken_ns) {
                Some(format!(
                    "{} was stamped too close to its last change to trust",
                    name(rel)
                ))
            } else {
                None
            }
        })
    }
}

/// Content digests of input files remembered by stamp, so an unchanged `{path:}` input is not
/// read again at every plan.
#[derive(Default, Serialize, Deserialize)]
pub struct StatCache {
    #[serde(skip)]
    file: Option<PathBuf>,
    #[serde(skip)]
    dirty: bool,
    files: Mutex<HashMap<PathBuf, Known>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Known {
    stamp: Stamp,
    taken_ns: i128,
    digest: Digest,
}

impl StatCache {
    /// The stat cache kept in `file` (empty when it does not exist or cannot be read).
    pub fn load(file: &Path) -> StatCache {
        let mut cache: StatCache = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        cache.file = Some(file.to_path_buf());
        cache
    }

    /// Writes the cache back if it learnt anything (atomically; a failure only costs re-hashing).
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        if !self.dirty {
            return;
        }
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        let bytes = serde_json::to_vec(self).expect("stat cache serialises");
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, file);
        }
    }

    /// The content digest of a file or tree, as [`crate::hash_path`] computes it, reading only
    /// files whose stamp changed since they were last hashed.
    pub fn hash_path(&mut self, root: &Path) -> std::io::Result<Digest> {
        let root = std::path::absolute(root)?;
        let learnt = Mutex::new(Vec::new());
        let files = &self.files;
        let digest = hash_tree_with(&root, &|path: &Path, meta: &std::fs::Metadata| {
            let stamp = Stamp::of(meta);
            let known = files.lock().expect("stat cache lock").get(path).cloned();
            if let Some(k) = known.filter(|k| k.stamp == stamp && !stamp.racy(k.taken_ns)) {
                return Ok(k.digest);
            }
            let taken_ns = now_ns();
            let digest = hash_file(path)?;
            learnt.lock().expect("learnt lock").push((
                path.to_path_buf(),
                Known {
                    stamp,
                    taken_ns,
                    digest,
                },
            ));
            Ok(digest)
        })?;
        let learnt = learnt.into_inner().expect("learnt lock");
        self.dirty |= !learnt.is_empty();
        self.files.get_mut().expect("stat cache lock").extend(learnt);
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle() {
        std::thread::sleep(std::time::Duration::from_millis(150));
    }

    #[test]
    fn the_stat_cache_gives_hash_path_s_digest_and_rereads_only_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("a"), "one").unwrap();
        std::fs::write(data.join("b"), "two").unwrap();
        settle();
        let file = dir.path().join("stat.json");
        let mut cache = StatCache::load(&file);
        assert_eq!(cache.hash_path(&data).unwrap(), crate::hash_path(&data).unwrap());
        cache.save();
        let mut cache = StatCache::load(&file);
        assert_eq!(cache.files.lock().unwrap().len(), 2);
        // Same size, same content length: only the stamp tells.
        std::fs::write(data.join("a"), "ONE").unwrap();
        settle();
        assert_eq!(cache.hash_path(&data).unwrap(), crate::hash_path(&data).unwrap());
        assert!(cache.dirty);
    }

    #[test]
    fn tree_stamps_name_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "1").unwrap();
        settle();
        let before = TreeStamps::of(dir.path()).unwrap();
        assert_eq!(before.changed(&TreeStamps::of(dir.path()).unwrap()), None);
        std::fs::write(dir.path().join("x"), "12").unwrap();
        let what = before.changed(&TreeStamps::of(dir.path()).unwrap()).unwrap();
        assert_eq!(what, "`x` changed size (1 → 2 bytes)");
        std::fs::remove_file(dir.path().join("x")).unwrap();
        let what = before.changed(&TreeStamps::of(dir.path()).unwrap()).unwrap();
        assert_eq!(what, "`x` was removed");
        std::fs::write(dir.path().join("y"), "1").unwrap();
        let what = before.changed(&TreeStamps::of(dir.path()).unwrap()).unwrap();
        assert_eq!(what, "`x` was removed");
        std::fs::write(dir.path().join("x"), "1").unwrap();
        let what = before.changed(&TreeStamps::of(dir.path()).unwrap()).unwrap();
        assert_eq!(what, "`y` was added");
    }
}
