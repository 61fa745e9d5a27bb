//! The tools stages run (the scoring Python, the security oracles, compilers) and their identity,
//! which joins the cache key of every stage that uses them.
//!
//! Tools are found without the caller's shell setup: a bare name is looked up in the project's
//! environments (`$SECVEC_HOME/.venv/bin`, `$SECVEC_HOME/.venv-oracles/bin`, where
//! `scripts/setup.sh` puts them) before `PATH`. `SECVEC_HOME` defaults to the nearest folder
//! above the running executable that holds `.venv`, so `target/release/secvec` finds its own
//! project from any working directory.
//!
//! Probing a tool (running it to learn its version) costs up to a few hundred milliseconds, so
//! results are remembered on disk, valid while every file they came from keeps its size, mtime,
//! ctime and inode (`$SECVEC_PROBE_CACHE`, default `~/.cache/secvec/probes`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use secvec_cache::{now_ns, write_atomic, Stamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use secvec_stage::home::{home, HOME_ENV};
pub const PROBE_CACHE_ENV: &str = "SECVEC_PROBE_CACHE";

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("`{name}` not found in {searched} (run scripts/setup.sh, or name the tool by path)")]
    NotFound { name: String, searched: String },
    #[error("probing {path}: {what}")]
    Probe { path: PathBuf, what: String },
}

/// The folders searched for a bare tool name, in order.
pub fn search_path() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = home()
        .map(|h| vec![h.join(".venv/bin"), h.join(".venv-oracles/bin")])
        .unwrap_or_default();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

/// The absolute path of a tool: `name` itself when it holds a `/`, else the first match on
/// [`search_path`].
pub fn find(name: &str) -> Result<PathBuf, ToolError> {
    if name.contains('/') {
        let p = Path::new(name);
        return match p.is_file() {
            true => Ok(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
            false => Err(ToolError::NotFound {
                name: name.into(),
                searched: "the file system".into(),
            }),
        };
    }
    let dirs = search_path();
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ToolError::NotFound {
            name: name.into(),
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        })
}

/// A Python interpreter as stages depend on it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PythonInfo {
    /// `sys.executable`.
    pub executable: PathBuf,
    pub version: String,
    /// Installed distributions, name → version.
    pub packages: BTreeMap<String, String>,
    /// Its `sys.path` folders: installing or removing a package changes one of them.
    pub paths: Vec<PathBuf>,
}

impl PythonInfo {
    /// The part that joins cache keys.
    pub fn identity(&self) -> Value {
        json!({"path": self.executable, "version": self.version, "packages": self.packages})
    }
}

const PYTHON_PROBE: &str = r#"
import importlib.metadata as m, json, os, sys
packages = {}
for d in m.distributions():
    name = d.metadata["Name"]
    if name:
        packages.setdefault(name.lower().replace("_", "-"), d.version)
print(json.dumps({"executable": sys.executable, "version": sys.version.split()[0],
                  "packages": packages, "paths": [p for p in sys.path if os.path.isdir(p)]}))
"#;

/// What a Python interpreter is, remembered while it and its `sys.path` folders are unchanged.
pub fn python(path: &Path) -> Result<PythonInfo, ToolError> {
    remembered("python", path, |deps| {
        let info: PythonInfo =
            serde_json::from_slice(&run_probe(path, &["-c", PYTHON_PROBE])?).map_err(|e| ToolError::Probe {
                path: path.into(),
                what: e.to_string(),
            })?;
        deps.extend(info.paths.iter().cloned());
        Ok(info)
    })
}

/// A tool's identity: its path and version. Python console scripts (bandit, semgrep) report the
/// version of their package in their interpreter, which avoids starting them; other programs
/// answer `--version`.
pub fn tool(path: &Path) -> Result<Value, ToolError> {
    if let Some(interpreter) = python_shebang(path) {
        let py = python(&interpreter)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy().to_lowercase();
        let version = py.packages.get(&name).cloned().unwrap_or_default();
        return Ok(json!({"path": path, "version": version, "python": py.executable}));
    }
    let version: String = remembered("version", path, |_| {
        let out = run_probe(path, &["--version"])?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string())
    })?;
    Ok(json!({"path": path, "version": version}))
}

/// The interpreter of a Python script's `#!` line.
fn python_shebang(path: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let first = std::str::from_utf8(&head[..n]).ok()?.lines().next()?;
    let interpreter = first.strip_prefix("#!")?.split_whitespace().next()?;
    Path::new(interpreter)
        .file_name()?
        .to_string_lossy()
        .starts_with("python")
        .then(|| PathBuf::from(interpreter))
}

fn run_probe(path: &Path, args: &[&str]) -> Result<Vec<u8>, ToolError> {
    let err = |what: String| ToolError::Probe {
        path: path.into(),
        what,
    };
    let out = Command::new(path)
        .args(args)
        .env_remove("PYTHONPATH")
        .output()
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// What a probe depended on, with its stamp then.
#[derive(Serialize, Deserialize)]
struct Dependency {
    path: PathBuf,
    stamp: Stamp,
}

#[derive(Serialize, Deserialize)]
struct Remembered<T> {
    deps: Vec<Dependency>,
    /// When the probe ran: a dependency stamped this close to it is never trusted.
    taken_ns: i128,
    value: T,
}

fn probe_dir() -> Option<PathBuf> {
    std::env::var_os(PROBE_CACHE_ENV)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/secvec/probes")))
}

/// `probe(extra)` for `path`, reused (in this process, then from disk) while `path` and the
/// files the probe added to `extra` keep their stamps.
pub fn remembered<T: Serialize + DeserializeOwned + Clone + Send + 'static>(
    what: &str,
    path: &Path,
    probe: impl FnOnce(&mut Vec<PathBuf>) -> Result<T, ToolError>,
) -> Result<T, ToolError> {
    static MEMO: OnceLock<Mutex<BTreeMap<String, Value>>> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let id = format!("{what}:{}", path.display());
    let file = probe_dir().map(|d| d.join(format!("{}.json", blake3::hash(id.as_bytes()).to_hex())));
    let fresh = |r: &Remembered<T>| {
        r.deps
            .iter()
            .all(|d| !d.stamp.racy(r.taken_ns) && Stamp::read(&d.path).ok() == Some(d.stamp))
    };
    if let Some(v) = memo.lock().expect("memo lock").get(&id) {
        if let Ok(r) = serde_json::from_value::<Remembered<T>>(v.clone()) {
            if fresh(&r) {
                return Ok(r.value);
            }
        }
    }
    let on_disk = file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|b| serde_json::from_slice::<Remembered<T>>(&b).ok())
        .filter(fresh);
    let r = match on_disk {
        Some(r) => r,
        None => {
            let taken_ns = now_ns();
            let stamped = |path: PathBuf| Stamp::read(&path).ok().map(|stamp| Dependency { path, stamp });
            let first = stamped(resolved);
            let mut extra = Vec::new();
            let value = probe(&mut extra)?;
            let deps = first.into_iter().chain(extra.into_iter().filter_map(stamped)).collect();
            let r = Remembered { deps, taken_ns, value };
            if let Some(f) = &file {
                // A probe cache that cannot be written only costs the next run a probe.
                let _ = write_atomic(f, &serde_json::to_vec(&r).expect("serialisable"));
            }
            r
        }
    };
    memo.lock()
        .expect("memo lock")
        .insert(id, serde_json::to_value(&r).expect("serialisable"));
    Ok(r.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_reused_until_its_files_change() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var(PROBE_CACHE_ENV, dir.path().join("probes"));
        let tool = dir.path().join("tool");
        let extra = dir.path().join("site");
        std::fs::write(&tool, "v1").unwrap();
        std::fs::create_dir(&extra).unwrap();
        let settle = || std::thread::sleep(std::time::Duration::from_millis(150));
        settle();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let probe = |deps: &mut Vec<PathBuf>| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            deps.push(extra.clone());
            Ok(std::fs::read_to_string(&tool).unwrap())
        };
        assert_eq!(remembered("t", &tool, probe).unwrap(), "v1");
        assert_eq!(remembered("t", &tool, probe).unwrap(), "v1");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A package installed into a folder the probe depends on.
        std::fs::write(extra.join("new.dist-info"), "").unwrap();
        settle();
        assert_eq!(remembered("t", &tool, probe).unwrap(), "v1");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
        std::fs::write(&tool, "v2").unwrap();
        settle();
        assert_eq!(remembered("t", &tool, probe).unwrap(), "v2");
    }
}
