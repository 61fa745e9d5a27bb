//! Per-run cgroups: the memory and process-count limits of sandboxed runs, and the kernel's own
//! record of which limit a run hit (`oom_kill` in the memory events, `max` in the pids events).
//! cgroup v2 (one unified hierarchy) and v1 (separate `memory` and `pids` hierarchies) both work;
//! creating them needs root.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "scoring runs every program under its own memory and pids cgroup, and none can be made \
         here ({0}); run secvec as root on a machine with the memory and pids controllers \
         (cgroup v1 or v2)"
    )]
    Unavailable(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// Where this machine's memory and pids controllers live.
#[derive(Clone, Debug)]
struct Hierarchy {
    version: Version,
    /// v2: the unified root; v1: the memory and the pids roots.
    roots: Vec<PathBuf>,
}

fn hierarchy() -> Result<Hierarchy, CgroupError> {
    let unavailable = |what: &str| CgroupError::Unavailable(what.into());
    if unsafe { libc::geteuid() } != 0 {
        return Err(unavailable("secvec is not running as root"));
    }
    let v1 = [Path::new("/sys/fs/cgroup/memory"), Path::new("/sys/fs/cgroup/pids")];
    if v1.iter().all(|r| r.join("cgroup.procs").exists()) {
        return Ok(Hierarchy {
            version: Version::V1,
            roots: v1.iter().map(|p| p.to_path_buf()).collect(),
        });
    }
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let controllers = std::fs::read_to_string(Path::new(root).join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if has("memory") && has("pids") {
            return Ok(Hierarchy {
                version: Version::V2,
                roots: vec![root.into()],
            });
        }
    }
    Err(unavailable("no cgroup hierarchy with the memory and pids controllers"))
}

/// Removes the (empty) cgroups a secvec process that was killed left behind.
fn remove_orphans(h: &Hierarchy) {
    for root in &h.roots {
        let Ok(entries) = std::fs::read_dir(root) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("secvec-").and_then(|r| r.split('-').next()) else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let dir = e.path();
                for child in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    if child.file_type().is_ok_and(|t| t.is_dir()) {
                        let _ = std::fs::remove_dir(child.path());
                    }
                }
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

/// One cgroup (a folder in each hierarchy), removed when dropped after killing what is left in it.
pub struct Cgroup {
    version: Version,
    dirs: Vec<PathBuf>,
}

/// What the kernel counted in a cgroup: processes the OOM killer took, and forks refused at the
/// process limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    pub oom_kills: u64,
    pub process_limit_hits: u64,
}

fn write(path: &Path, text: &str) -> Result<(), CgroupError> {
    std::fs::write(path, text).map_err(|source| CgroupError::Io {
        path: path.into(),
        source,
    })
}

/// The number after `key ` in a flat-keyed cgroup file.
fn counter(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

impl Cgroup {
    /// A new top-level cgroup of secvec's, with a memory and a process-count limit.
    pub fn create(memory_bytes: u64, processes: u64) -> Result<Cgroup, CgroupError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let h = hierarchy()?;
        if N.load(Ordering::Relaxed) == 0 {
            remove_orphans(&h);
        }
        let name = format!("secvec-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        if h.version == Version::V2 {
            // Enabling is idempotent; a root that already delegates them accepts it.
            let _ = std::fs::write(h.roots[0].join("cgroup.subtree_control"), "+memory +pids");
        }
        Self::make(
            h.version,
            h.roots.iter().map(|r| r.join(&name)).collect(),
            memory_bytes,
            processes,
        )
    }

    /// A cgroup inside this one (its limits apply on top of this one's).
    pub fn child(&self, name: &str, memory_bytes: u64, processes: u64) -> Result<Cgroup, CgroupError> {
        if self.version == Version::V2 {
            write(&self.dirs[0].join("cgroup.subtree_control"), "+memory +pids")?;
        }
        Self::make(
            self.version,
            self.dirs.iter().map(|d| d.join(name)).collect(),
            memory_bytes,
            processes,
        )
    }

    fn make(version: Version, dirs: Vec<PathBuf>, memory_bytes: u64, processes: u64) -> Result<Cgroup, CgroupError> {
        for d in &dirs {
            std::fs::create_dir(d).map_err(|source| CgroupError::Io {
                path: d.clone(),
                source,
            })?;
        }
        let cg = Cgroup { version, dirs };
        let (memory, pids) = cg.memory_and_pids();
        let memory_file = if version == Version::V1 {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        };
        write(&memory.join(memory_file), &memory_bytes.to_string())?;
        if version == Version::V2 {
            // No swap: the limit is the limit.
            let _ = std::fs::write(memory.join("memory.swap.max"), "0");
        }
        write(&pids.join("pids.max"), &processes.to_string())?;
        Ok(cg)
    }

    fn memory_and_pids(&self) -> (&Path, &Path) {
        (&self.dirs[0], self.dirs.last().expect("at least one"))
    }

    /// One folder per hierarchy (v1: memory, then pids).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// `cgroup.procs` of each hierarchy: writing a PID (or `0`, oneself) there moves it in.
    pub fn procs_files(&self) -> Vec<std::ffi::CString> {
        self.dirs
            .iter()
            .map(|d| std::ffi::CString::new(d.join("cgroup.procs").as_os_str().as_encoded_bytes()).expect("no NUL"))
            .collect()
    }

    /// The events file and counter key of the OOM kills, then of the process-limit hits, each
    /// relative to its hierarchy's folder.
    pub fn event_files(&self) -> [(&'static str, &'static str); 2] {
        match self.version {
            Version::V1 => [("memory.oom_control", "oom_kill"), ("pids.events", "max")],
            Version::V2 => [("memory.events", "oom_kill"), ("pids.events", "max")],
        }
    }

    pub fn events(&self) -> Events {
        let (memory, pids) = self.memory_and_pids();
        let [(m, mk), (p, pk)] = self.event_files();
        Events {
            oom_kills: counter(&memory.join(m), mk),
            process_limit_hits: counter(&pids.join(p), pk),
        }
    }

    fn pids(&self) -> Vec<i32> {
        self.dirs
            .iter()
            .flat_map(|d| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect()
    }

    /// Kills every process in the cgroup (and its children) and waits until it is empty.
    pub fn kill_all(&self) {
        for _ in 0..10_000 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.kill_all();
        for d in &self.dirs {
            // Children first: a cgroup with sub-cgroups cannot be removed.
            if let Ok(entries) = std::fs::read_dir(d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            // Processes that were just killed leave the cgroup a moment later.
            for _ in 0..200 {
                match std::fs::remove_dir(d) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(Duration::from_millis(5)),
                    _ => break,
                }
            }
        }
    }
}
