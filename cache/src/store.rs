use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::{hash_path, Digest};
use crate::stamp::TreeStamps;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache entry {path} is unreadable: {source}")]
    BadEntry {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, CacheError>;

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// What the action cache stores for one stage key: the output tree and everything that explains it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActionEntry {
    pub key: Digest,
    pub output: Digest,
    /// The canonical pre-image the key was hashed from.
    pub preimage: Value,
    pub provenance: Value,
}

/// Serialises JSON with object keys sorted at every level and no whitespace: the one byte form a
/// value hashes to.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&map[k]))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sorted(value)).expect("JSON values always serialise")
}

/// The cache key of a pre-image.
pub fn key_of(preimage: &Value) -> Digest {
    Digest::of_bytes(&canonical_json(preimage))
}

/// An open cache. While it lives the process holds the cache-wide lock (shared for runs,
/// exclusive for garbage collection); the kernel drops it if the process dies.
pub struct Cache {
    root: PathBuf,
    _lock: File,
}

/// Held while a key is being computed, so a second process waits and then finds the entry.
pub struct KeyLock {
    _file: File,
}

/// A private directory to write one stage's outputs into before they are committed.
pub struct Staging {
    dir: PathBuf,
    out: PathBuf,
    _lock: File,
}

impl Staging {
    /// Where the stage writes its outputs.
    pub fn out(&self) -> &Path {
        &self.out
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub what: String,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub artifacts_checked: usize,
    pub entries_checked: usize,
    pub problems: Vec<Problem>,
    pub removed: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// The stages whose last results go, as `(manifest, stage)` from their run records.
    pub stages_removed: Vec<(String, String)>,
    /// The output trees that go.
    pub artifacts: Vec<PathBuf>,
    pub entries_removed: usize,
    pub artifacts_removed: usize,
    pub bytes_freed: u64,
    pub entries_kept: usize,
}

/// What the cache holds for a key.
#[derive(Debug)]
pub enum Found {
    Miss,
    /// The entry, with its output tree as it was committed.
    Hit(ActionEntry),
    /// The entry, but its output tree was deleted or changed after it was committed (in words).
    Damaged(ActionEntry, String),
}

/// Readable entries with their paths, and the unreadable ones as problems.
type ScannedEntries = (Vec<(PathBuf, ActionEntry)>, Vec<Problem>);

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Cache {
    /// Opens (creating if needed) a cache for running stages; many processes may do so at once.
    pub fn open(root: &Path) -> Result<Cache> {
        let cache = Self::open_with(root, false)?;
        cache.clean_stale_staging()?;
        Ok(cache)
    }

    /// Opens a cache for maintenance, waiting until no run holds it.
    pub fn open_exclusive(root: &Path) -> Result<Cache> {
        Self::open_with(root, true)
    }

    fn open_with(root: &Path, exclusive: bool) -> Result<Cache> {
        for sub in [
            "store", "stamps", "ac", "records", "locks", "tmp", "scratch", "memo", "jobs",
        ] {
            let p = root.join(sub);
            io(&p, fs::create_dir_all(&p))?;
        }
        let lock_path = root.join("LOCK");
        let lock = io(
            &lock_path,
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path),
        )?;
        io(&lock_path, if exclusive { lock.lock() } else { lock.lock_shared() })?;
        Ok(Cache {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn artifact_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("store").join(digest.hex())
    }

    fn entry_path(&self, key: &Digest) -> PathBuf {
        let hex = key.hex();
        self.root.join("ac").join(&hex[..2]).join(format!("{hex}.json"))
    }

    fn record_path(&self, scope: &str, name: &str) -> PathBuf {
        self.root.join("records").join(scope).join(format!("{name}.json"))
    }

    /// Blocks until this process is the only one computing `key`.
    pub fn lock_key(&self, key: &Digest) -> Result<KeyLock> {
        let path = self.root.join("locks").join(format!("{}.lock", key.hex()));
        let file = io(
            &path,
            OpenOptions::new().create(true).truncate(false).write(true).open(&path),
        )?;
        io(&path, file.lock())?;
        Ok(KeyLock { _file: file })
    }

    fn stamps_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("stamps").join(format!("{}.json", digest.hex()))
    }

    /// The committed entry for `key`, and whether its output tree is still as committed: its
    /// stamps are compared with those taken at commit, and only when they differ (or are too
    /// recent to trust) are its bytes hashed again. A tree whose bytes still hash to its name
    /// (e.g. one that was only touched) gets fresh stamps and counts as intact.
    pub fn find(&self, key: &Digest) -> Result<Found> {
        let Some(entry) = self.entry(key)? else {
            return Ok(Found::Miss);
        };
        Ok(match self.check_artifact(&entry.output) {
            None => Found::Hit(entry),
            Some(what) => Found::Damaged(entry, what),
        })
    }

    /// The committed entry for `key`, without checking its output tree: for the process that
    /// has just committed it (or watched a job commit it) and knows the tree is fresh.
    pub fn entry(&self, key: &Digest) -> Result<Option<ActionEntry>> {
        let path = self.entry_path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::Io { path, source: e }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| CacheError::BadEntry { path, source })
    }

    /// `None` when the stored tree `digest` is as committed, else what changed.
    fn check_artifact(&self, digest: &Digest) -> Option<String> {
        let dir = self.artifact_path(digest);
        if !dir.is_dir() {
            return Some(format!("its stored outputs {} were deleted", dir.display()));
        }
        let now = match TreeStamps::of(&dir) {
            Ok(now) => now,
            Err(e) => return Some(format!("its stored outputs cannot be read: {e}")),
        };
        let recorded: Option<TreeStamps> = fs::read(self.stamps_path(digest))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let changed = match &recorded {
            Some(r) => r.changed(&now)?,
            None => "no stamps were recorded".to_string(),
        };
        match hash_path(&dir) {
            Ok(d) if d == *digest => {
                // Same bytes: stamp again (the taking is after the hash, so a change made
                // while hashing leaves a stamp that differs).
                let _ = self.write_stamps(digest);
                None
            }
            Ok(d) => Some(format!(
                "its stored outputs {} changed after they were cached ({changed}; they now hash to {})",
                dir.display(),
                d.short()
            )),
            Err(e) => Some(format!("its stored outputs cannot be hashed ({changed}): {e}")),
        }
    }

    fn write_stamps(&self, digest: &Digest) -> Result<()> {
        let stamps = io(&self.artifact_path(digest), TreeStamps::of(&self.artifact_path(digest)))?;
        self.atomic_write(
            &self.stamps_path(digest),
            &serde_json::to_vec(&stamps).expect("stamps serialise"),
        )
    }

    /// Removes a stored tree (e.g. one found damaged), so that the next commit of its digest
    /// stores it afresh.
    pub fn discard_artifact(&self, digest: &Digest) -> Result<()> {
        let dir = self.artifact_path(digest);
        let grave = self.staging()?;
        let _ = fs::remove_file(self.stamps_path(digest));
        match fs::rename(&dir, grave.out().with_file_name("discarded")) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::Io { path: dir, source: e }),
        }
    }

    pub fn staging(&self) -> Result<Staging> {
        let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        // Named by host: on a filesystem shared by a cluster, only this host can tell from its
        // lock whether one of its own staging folders is abandoned.
        let name = format!("{}+{}-{nanos}-{n}", this_host(), std::process::id());
        let tmp = self.root.join("tmp");
        // Built under a hidden name and renamed once its lock is held, so that a cleaner never
        // sees a visible folder whose lock is free while its owner lives.
        let building = tmp.join(format!(".{name}"));
        let dir = tmp.join(&name);
        io(&building, fs::create_dir(&building))?;
        let lock_path = building.join("lock");
        let lock = io(&lock_path, File::create(&lock_path))?;
        io(&lock_path, lock.lock())?;
        io(&building, fs::create_dir(building.join("out")))?;
        io(&dir, fs::rename(&building, &dir))?;
        let out = dir.join("out");
        Ok(Staging { dir, out, _lock: lock })
    }

    /// Moves a staged tree into the store under its content digest. Committing a tree that is
    /// already stored is a no-op, which is what lets identical outputs cut off reruns.
    pub fn commit(&self, staging: Staging) -> Result<Digest> {
        let digest = io(staging.out(), hash_path(staging.out()))?;
        let target = self.artifact_path(&digest);
        if !target.exists() {
            io(staging.out(), make_read_only(staging.out()))?;
            match fs::rename(staging.out(), &target) {
                Ok(()) => self.write_stamps(&digest)?,
                Err(e) if !target.exists() => {
                    return Err(CacheError::Io {
                        path: target,
                        source: e,
                    })
                }
                // Another process committed the same tree first, and stamps it.
                Err(_) => {}
            }
        }
        Ok(digest)
    }

    /// Where `key`'s scratch folder is: made by the stage that needs one, it survives failed and
    /// killed attempts (the key's lock makes its user exclusive) until [`Cache::remove_scratch`].
    pub fn scratch_dir(&self, key: &Digest) -> PathBuf {
        self.root.join("scratch").join(key.hex())
    }

    /// The responses of expensive calls, shared by every stage (see [`Memo`]).
    pub fn memo(&self) -> crate::Memo {
        crate::Memo::new(self.root.join("memo"))
    }

    /// Removes a key's scratch folder once its outputs are committed.
    pub fn remove_scratch(&self, key: &Digest) {
        let _ = fs::remove_dir_all(self.root.join("scratch").join(key.hex()));
    }

    /// Writes the action entry, the last step of a commit: until it exists the key is not cached.
    pub fn put_entry(&self, entry: &ActionEntry) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(entry).expect("entries serialise");
        self.atomic_write(&self.entry_path(&entry.key), &bytes)
    }

    pub fn put_record(&self, scope: &str, name: &str, value: &Value) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).expect("records serialise");
        self.atomic_write(&self.record_path(scope, name), &bytes)
    }

    pub fn record(&self, scope: &str, name: &str) -> Option<Value> {
        let bytes = fs::read(self.record_path(scope, name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn atomic_write(&self, target: &Path, bytes: &[u8]) -> Result<()> {
        let staging = self.staging()?;
        let part = staging.out().join("part");
        io(&part, fs::write(&part, bytes))?;
        let parent = target.parent().expect("cache paths have parents");
        io(parent, fs::create_dir_all(parent))?;
        io(target, fs::rename(&part, target))
    }

    /// Removes staging directories whose owner is gone (its lock is free). Another host's are
    /// left for a day: its lock may not reach this host (an NFS mount without locking), and a
    /// folder removed under a live stage would fail that stage's commit.
    fn clean_stale_staging(&self) -> Result<()> {
        let tmp = self.root.join("tmp");
        let host = this_host();
        let age = |entry: &fs::DirEntry| {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default())
                .unwrap_or_default()
        };
        for entry in io(&tmp, fs::read_dir(&tmp))?.flatten() {
            let dir = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let mine = name
                .trim_start_matches('.')
                .split_once('+')
                .is_none_or(|(h, _)| h == host);
            if !mine && age(&entry) < Duration::from_secs(24 * 3600) {
                continue;
            }
            let stale = match File::open(dir.join("lock")) {
                _ if name.starts_with('.') => age(&entry) > Duration::from_secs(60),
                Ok(f) => f.try_lock().is_ok(),
                // A visible folder always had its lock; without one it is debris.
                Err(_) => true,
            };
            if stale {
                let _ = fs::remove_dir_all(&dir);
            }
        }
        Ok(())
    }

    /// All readable action entries, and the paths of the unreadable ones.
    fn scan_entries(&self) -> Result<ScannedEntries> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let ac = self.root.join("ac");
        for entry in walkdir::WalkDir::new(&ac).min_depth(2).max_depth(2) {
            let entry = entry.map_err(|e| CacheError::Io {
                path: ac.clone(),
                source: e.into(),
            })?;
            let path = entry.into_path();
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<ActionEntry>(&b).map_err(|e| e.to_string()))
            {
                Ok(e) => good.push((path, e)),
                Err(what) => bad.push(Problem {
                    path,
                    what: format!("unreadable entry: {what}"),
                }),
            }
        }
        Ok((good, bad))
    }

    fn artifact_dirs(&self) -> Result<Vec<PathBuf>> {
        let store = self.root.join("store");
        let mut dirs: Vec<PathBuf> = io(&store, fs::read_dir(&store))?.flatten().map(|e| e.path()).collect();
        dirs.sort();
        Ok(dirs)
    }

    /// Re-hashes every stored tree and checks every entry; with `fix`, removes what is broken so
    /// that the next run recomputes it.
    pub fn verify(&self, fix: bool) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut corrupt = HashSet::new();
        for dir in self.artifact_dirs()? {
            report.artifacts_checked += 1;
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let what = match (name.parse::<Digest>(), hash_path(&dir)) {
                (Err(_), _) => Some("artifact directory name is not a digest".to_string()),
                (_, Err(e)) => Some(format!("artifact cannot be hashed: {e}")),
                (Ok(want), Ok(got)) if want != got => Some(format!(
                    "artifact content hashes to {} instead of its name",
                    got.short()
                )),
                _ => None,
            };
            if let Some(what) = what {
                if let Ok(d) = name.parse::<Digest>() {
                    corrupt.insert(d);
                }
                report.problems.push(Problem { path: dir, what });
            }
        }
        let (entries, mut bad) = self.scan_entries()?;
        report.entries_checked = entries.len() + bad.len();
        for (path, entry) in entries {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let what = if stem != entry.key.hex() {
                Some("entry file name does not match its key".to_string())
            } else if key_of(&entry.preimage) != entry.key {
                Some("entry key does not match the hash of its pre-image".to_string())
            } else if corrupt.contains(&entry.output) {
                Some(format!("entry points at corrupt artifact {}", entry.output.short()))
            } else if !self.artifact_path(&entry.output).is_dir() {
                Some(format!("entry points at missing artifact {}", entry.output.short()))
            } else {
                None
            };
            if let Some(what) = what {
                bad.push(Problem { path, what });
            }
        }
        report.problems.extend(bad);
        if fix {
            for p in &report.problems {
                let removed = if p.path.is_dir() {
                    fs::remove_dir_all(&p.path)
                } else {
                    fs::remove_file(&p.path)
                };
                if removed.is_ok() {
                    report.removed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Removes every entry whose key is not in `keep`, every artifact no kept entry points at,
    /// and the records and locks that go with them. Requires [`Cache::open_exclusive`].
    pub fn gc(&self, keep: &HashSet<Digest>, dry_run: bool) -> Result<GcReport> {
        let mut report = GcReport::default();
        let (entries, bad) = self.scan_entries()?;
        let mut live_outputs = HashSet::new();
        let mut remove: Vec<PathBuf> = bad.into_iter().map(|p| p.path).collect();
        for (path, entry) in entries {
            if keep.contains(&entry.key) {
                live_outputs.insert(entry.output);
                report.entries_kept += 1;
            } else {
                remove.push(path);
            }
        }
        report.entries_removed = remove.len();
        for dir in self.artifact_dirs()? {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name
                .parse::<Digest>()
                .map(|d| !live_outputs.contains(&d))
                .unwrap_or(true)
            {
                report.artifacts_removed += 1;
                report.bytes_freed += tree_size(&dir);
                report.artifacts.push(dir.clone());
                remove.push(self.root.join("stamps").join(format!("{name}.json")));
                remove.push(dir);
            }
        }
        // Checkpoints and cluster job folders (descriptions, logs, results) live by key.
        for sub in ["scratch", "jobs"] {
            for dir in fs::read_dir(self.root.join(sub)).into_iter().flatten().flatten() {
                let name = dir.file_name().to_string_lossy().to_string();
                if name.parse::<Digest>().map(|d| !keep.contains(&d)).unwrap_or(true) {
                    remove.push(dir.path());
                }
            }
        }
        let locks = self.root.join("locks");
        for lock in io(&locks, fs::read_dir(&locks))?.flatten() {
            let name = lock.file_name().to_string_lossy().trim_end_matches(".lock").to_string();
            if name.parse::<Digest>().map(|d| !keep.contains(&d)).unwrap_or(true) {
                remove.push(lock.path());
            }
        }
        for rec in walkdir::WalkDir::new(self.root.join("records"))
            .min_depth(2)
            .into_iter()
            .flatten()
        {
            let key = fs::read(rec.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| {
                    v.get("key")
                        .and_then(|k| k.as_str())
                        .and_then(|k| k.parse::<Digest>().ok())
                });
            if key.map(|k| !keep.contains(&k)).unwrap_or(true) {
                let path = rec.into_path();
                let text = |n: Option<&std::ffi::OsStr>| n.map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                if key.is_some() {
                    let manifest = text(path.parent().and_then(Path::file_name));
                    report.stages_removed.push((manifest, text(path.file_stem())));
                }
                remove.push(path);
            }
        }
        if !dry_run {
            for path in remove {
                let r = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                match r {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    r => io(&path, r)?,
                }
            }
            let tmp = self.root.join("tmp");
            for t in io(&tmp, fs::read_dir(&tmp))?.flatten() {
                let _ = fs::remove_dir_all(t.path());
            }
        }
        Ok(report)
    }
}

fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().replace(['+', '/'], "_")
}

fn make_read_only(root: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.map_err(std::io::Error::other)?;
        if entry.file_type().is_file() {
            let mut perm = entry.metadata().map_err(std::io::Error::other)?.permissions();
            perm.set_mode(perm.mode() & 0o555);
            fs::set_permissions(entry.path(), perm)?;
        }
    }
    Ok(())
}

fn tree_size(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stage_file(cache: &Cache, name: &str, body: &str) -> Digest {
        let staging = cache.staging().unwrap();
        fs::write(staging.out().join(name), body).unwrap();
        cache.commit(staging).unwrap()
    }

    fn entry(preimage: Value, output: Digest) -> ActionEntry {
        ActionEntry {
            key: key_of(&preimage),
            output,
            preimage,
            provenance: json!({}),
        }
    }

    #[test]
    fn commit_lookup_and_identical_outputs_share_one_artifact() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let a = stage_file(&cache, "x", "same");
        let b = stage_file(&cache, "x", "same");
        assert_eq!(a, b);
        assert_eq!(fs::read_dir(root.path().join("store")).unwrap().count(), 1);
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
        let e = entry(json!({"params": {"b": 1, "a": 2}}), a);
        assert!(matches!(cache.find(&e.key).unwrap(), Found::Miss));
        cache.put_entry(&e).unwrap();
        assert!(matches!(cache.find(&e.key).unwrap(), Found::Hit(h) if h.output == a));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": {"y": 1, "x": [ {"q": 1, "p": 2} ]}, "a": 0});
        assert_eq!(
            canonical_json(&a),
            br#"{"a":0,"b":{"x":[{"p":2,"q":1}],"y":1}}"#.to_vec()
        );
        assert_eq!(
            key_of(&a),
            key_of(&json!({"a": 0, "b": {"x": [{"p": 2, "q": 1}], "y": 1}}))
        );
    }

    #[test]
    fn verify_finds_tampered_artifacts_and_fix_removes_them() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let d = stage_file(&cache, "x", "payload");
        let e = entry(json!({"n": 1}), d);
        cache.put_entry(&e).unwrap();
        assert!(cache.verify(false).unwrap().problems.is_empty());
        let file = cache.artifact_path(&d).join("x");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&file, "tampered").unwrap();
        let report = cache.verify(true).unwrap();
        assert_eq!(report.problems.len(), 2, "{report:?}");
        assert!(matches!(cache.find(&e.key).unwrap(), Found::Miss));
        assert!(cache.verify(false).unwrap().problems.is_empty());
    }

    #[test]
    fn find_tells_a_damaged_or_deleted_artifact_from_a_touched_one() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let d = stage_file(&cache, "x", "payload");
        let e = entry(json!({"n": 1}), d);
        cache.put_entry(&e).unwrap();
        assert!(matches!(cache.find(&e.key).unwrap(), Found::Hit(_)));
        let file = cache.artifact_path(&d).join("x");
        // Touched (same bytes): still a hit.
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(cache.find(&e.key).unwrap(), Found::Hit(_)));
        // Same size, other bytes, as an edit through an out/ link would leave it.
        fs::write(&file, "PAYLOAD").unwrap();
        match cache.find(&e.key).unwrap() {
            Found::Damaged(_, what) => assert!(what.contains("changed after they were cached"), "{what}"),
            other => panic!("{other:?}"),
        }
        cache.discard_artifact(&d).unwrap();
        match cache.find(&e.key).unwrap() {
            Found::Damaged(_, what) => assert!(what.contains("were deleted"), "{what}"),
            other => panic!("{other:?}"),
        }
        // Committing the same tree again repairs the entry.
        assert_eq!(stage_file(&cache, "x", "payload"), d);
        assert!(matches!(cache.find(&e.key).unwrap(), Found::Hit(_)));
    }

    #[test]
    fn stale_staging_is_cleaned_but_live_staging_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let live = cache.staging().unwrap();
        let stale = root.path().join("tmp/dead");
        fs::create_dir_all(&stale).unwrap();
        File::create(stale.join("lock")).unwrap();
        let _other = Cache::open(root.path()).unwrap();
        assert!(live.out().exists());
        assert!(!stale.exists());
    }

    #[test]
    fn gc_keeps_only_what_is_referenced() {
        let root = tempfile::tempdir().unwrap();
        let keep_key;
        {
            let cache = Cache::open(root.path()).unwrap();
            let a = stage_file(&cache, "a", "1");
            let b = stage_file(&cache, "b", "2");
            let ea = entry(json!({"n": "a"}), a);
            let eb = entry(json!({"n": "b"}), b);
            cache.put_entry(&ea).unwrap();
            cache.put_entry(&eb).unwrap();
            for key in [ea.key, eb.key] {
                fs::create_dir_all(root.path().join("jobs").join(key.hex())).unwrap();
            }
            keep_key = ea.key;
        }
        let cache = Cache::open_exclusive(root.path()).unwrap();
        let keep = HashSet::from([keep_key]);
        let dry = cache.gc(&keep, true).unwrap();
        assert_eq!((dry.entries_removed, dry.artifacts_removed), (1, 1));
        assert_eq!(fs::read_dir(root.path().join("store")).unwrap().count(), 2);
        cache.gc(&keep, false).unwrap();
        assert_eq!(fs::read_dir(root.path().join("store")).unwrap().count(), 1);
        let jobs: Vec<_> = fs::read_dir(root.path().join("jobs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            jobs,
            vec![std::ffi::OsString::from(keep_key.hex())],
            "only the kept key's job folder stays"
        );
        assert!(matches!(cache.find(&keep_key).unwrap(), Found::Hit(_)));
    }
}
