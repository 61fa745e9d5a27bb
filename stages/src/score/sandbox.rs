//! Runs untrusted code (generated samples and the tests that exercise them) under bubblewrap:
//! a filesystem view of read-only system and interpreter directories plus one writable scratch
//! directory, no network, its own PID namespace, resource limits, and a wall-clock limit at
//! which the whole process tree dies.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Clone, Debug)]
pub struct Limits {
    pub cpu_seconds: u64,
    pub memory_bytes: u64,
    pub processes: u64,
    pub file_bytes: u64,
    pub wall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_seconds: 10,
            memory_bytes: 2 << 30,
            processes: 64,
            file_bytes: 64 << 20,
            wall: Duration::from_secs(20),
        }
    }
}

/// Why a sandboxed run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitReason {
    Ok,
    Fail,
    Timeout,
    Oom,
    Crash,
    SandboxViolation,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunOutcome {
    pub reason: ExitReason,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    /// The last few KB of stderr.
    pub stderr: String,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("bubblewrap (`bwrap`) is not installed; scripts/setup.sh installs it (Debian package `bubblewrap`)")]
    NoBwrap,
    #[error("starting the sandbox: {0}")]
    Spawn(std::io::Error),
    #[error("cannot run `{python}` to find its installation: {what}")]
    Python { python: String, what: String },
}

/// Where the scratch directory appears inside the sandbox (its working directory and HOME).
pub const SCRATCH: &str = "/sandbox";

/// The directories every sandbox sees read-only, besides those given to [`Sandbox::new`].
const SYSTEM: [&str; 2] = ["/usr", "/etc/alternatives"];

/// A pids cgroup capping how many processes a run may have at once: the fork-bomb guard for
/// root, whom RLIMIT_NPROC does not bind. Removed (after killing what is left) when dropped.
struct PidsCgroup {
    dir: PathBuf,
    procs: std::ffi::CString,
}

impl PidsCgroup {
    fn create(max: u64) -> Option<PidsCgroup> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("secvec-{}-{n}", std::process::id());
        ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"].iter().find_map(|root| {
            let root = Path::new(root);
            if !root.join("cgroup.procs").exists() {
                return None;
            }
            let dir = root.join(&name);
            std::fs::create_dir(&dir).ok()?;
            if std::fs::write(dir.join("pids.max"), max.to_string()).is_err() {
                let _ = std::fs::remove_dir(&dir);
                return None;
            }
            let procs = std::ffi::CString::new(dir.join("cgroup.procs").to_string_lossy().as_bytes()).ok()?;
            Some(PidsCgroup { dir, procs })
        })
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            let pids = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
            if pids.trim().is_empty() {
                break;
            }
            for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

pub struct Sandbox {
    bwrap: PathBuf,
    read_only: Vec<PathBuf>,
    path: String,
    /// Under bubblewrap; otherwise only the limits apply (to measure what confinement costs).
    confined: bool,
}

const TAIL: usize = 4096;

/// Reads a pipe to its end on its own thread, keeping only the tail.
fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 4 * TAIL {
                buf.drain(..buf.len() - TAIL);
            }
        }
        buf
    })
}

/// Names how a run ended, from its status and what it said on stderr.
fn classify(timed_out: bool, code: Option<i32>, signal: Option<i32>, stderr: &str) -> ExitReason {
    // bwrap reports a child killed by signal N as exit code 128 + N.
    let signal = signal.or(code.filter(|c| *c > 128).map(|c| c - 128));
    const OOM: [&str; 4] = ["MemoryError", "Cannot allocate memory", "bad_alloc", "out of memory"];
    const VIOLATION: [&str; 5] = [
        "Read-only file system",
        "Network is unreachable",
        "Operation not permitted",
        "Resource temporarily unavailable",
        "Permission denied",
    ];
    if timed_out || signal == Some(libc::SIGXCPU) {
        ExitReason::Timeout
    } else if OOM.iter().any(|m| stderr.contains(m)) || signal == Some(libc::SIGKILL) {
        ExitReason::Oom
    } else if VIOLATION.iter().any(|m| stderr.contains(m)) {
        ExitReason::SandboxViolation
    } else if signal.is_some() {
        ExitReason::Crash
    } else if code == Some(0) {
        ExitReason::Ok
    } else {
        ExitReason::Fail
    }
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(TAIL);
    String::from_utf8_lossy(&bytes[start..]).to_string()
}

impl Sandbox {
    /// A sandbox that also sees `read_only` (e.g. a Python installation and a test folder), and
    /// finds programs in `bin_dirs` first.
    pub fn new(read_only: Vec<PathBuf>, bin_dirs: &[PathBuf]) -> Result<Sandbox, SandboxError> {
        let bwrap = ["/usr/bin/bwrap", "/bin/bwrap"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or(SandboxError::NoBwrap)?;
        let mut path: Vec<String> = bin_dirs.iter().map(|p| p.display().to_string()).collect();
        path.extend(["/usr/local/bin".into(), "/usr/bin".into(), "/bin".into()]);
        Ok(Sandbox {
            bwrap,
            read_only,
            path: path.join(":"),
            confined: true,
        })
    }

    /// The same runs without bubblewrap: the limits, session and wall clock still apply, but
    /// the program sees and may change the whole machine. Only for measuring the sandbox.
    pub fn unconfined(self) -> Sandbox {
        Sandbox {
            confined: false,
            ..self
        }
    }

    /// Where a program run in `scratch` sees it.
    pub fn scratch_seen_as(&self, scratch: &Path) -> PathBuf {
        if self.confined {
            PathBuf::from(SCRATCH)
        } else {
            scratch.to_path_buf()
        }
    }

    /// A sandbox that can run the Python interpreter `python` (a name on PATH or a path): it
    /// sees the interpreter's installation and virtual environment read-only. Returns the
    /// interpreter's absolute path with it.
    pub fn for_python(python: &str) -> Result<(Sandbox, String), SandboxError> {
        let err = |what: String| SandboxError::Python {
            python: python.into(),
            what,
        };
        let out = Command::new(python)
            .args([
                "-c",
                "import sys; print(sys.executable); print(sys.base_prefix); print(sys.prefix)",
            ])
            .output()
            .map_err(|e| err(e.to_string()))?;
        if !out.status.success() {
            return Err(err(String::from_utf8_lossy(&out.stderr).to_string()));
        }
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let exe = lines.next().unwrap_or_default().to_string();
        let mut dirs: Vec<PathBuf> = lines.map(PathBuf::from).collect();
        dirs.dedup();
        let bins: Vec<PathBuf> = dirs.iter().map(|d| d.join("bin")).collect();
        Ok((Sandbox::new(dirs, &bins)?, exe))
    }

    fn bwrap_command(&self, scratch: &Path, argv: &[&str]) -> Result<Command, SandboxError> {
        let mut cmd = Command::new(&self.bwrap);
        cmd.args(["--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]);
        cmd.args(["--proc", "/proc", "--dev", "/dev"]);
        // /tmp is a folder of the scratch directory, so nothing is written anywhere else. It is
        // mounted before the read-only folders, so one that lies under /tmp (a checkout in
        // /tmp, say) stays visible; its mount point is then made inside the scratch folder.
        let tmp = scratch.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(SandboxError::Spawn)?;
        cmd.arg("--bind").arg(&tmp).arg("/tmp");
        for link in ["lib", "lib64", "bin", "sbin"] {
            if Path::new("/usr").join(link).exists() {
                cmd.args(["--symlink", &format!("usr/{link}"), &format!("/{link}")]);
            }
        }
        for dir in SYSTEM.iter().map(PathBuf::from).chain(self.read_only.iter().cloned()) {
            if dir.exists() {
                cmd.arg("--ro-bind").arg(&dir).arg(&dir);
            }
        }
        // The sandbox's own root is remounted read-only once every mount point exists.
        cmd.arg("--bind").arg(scratch).arg(SCRATCH);
        cmd.args(["--remount-ro", "/", "--chdir", SCRATCH, "--setenv", "HOME", SCRATCH]);
        cmd.args([
            "--setenv",
            "PATH",
            &self.path,
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--setenv",
            "PYTHONDONTWRITEBYTECODE",
            "1",
        ]);
        cmd.arg("--").args(argv);
        Ok(cmd)
    }

    /// Runs `argv` in `scratch` (the only writable place, seen as [`SCRATCH`]) and reports how
    /// it ended.
    pub fn run(&self, scratch: &Path, argv: &[&str], limits: &Limits) -> Result<RunOutcome, SandboxError> {
        let mut cmd = if self.confined {
            self.bwrap_command(scratch, argv)?
        } else {
            let mut cmd = Command::new(argv[0]);
            cmd.args(&argv[1..]).current_dir(scratch).env_clear();
            cmd.env("HOME", scratch).env("PATH", &self.path).env("LANG", "C.UTF-8");
            cmd.env("PYTHONDONTWRITEBYTECODE", "1");
            cmd
        };

        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let l = limits.clone();
        let cgroup = PidsCgroup::create(limits.processes);
        let procs = cgroup.as_ref().map(|c| c.procs.clone());
        // SAFETY: only async-signal-safe calls (setsid, open, write, close, umask, setrlimit)
        // between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                // The modes of files a program creates must not depend on who runs the scorer
                // (CodeGuard+ cwe-732 tests judge them).
                libc::umask(0o022);
                if let Some(procs) = &procs {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                    if fd >= 0 {
                        libc::write(fd, b"0".as_ptr().cast(), 1);
                        libc::close(fd);
                    }
                }
                let set = |res, v: u64| {
                    let r = libc::rlimit {
                        rlim_cur: v as libc::rlim_t,
                        rlim_max: v as libc::rlim_t,
                    };
                    libc::setrlimit(res, &r);
                };
                // SIGXCPU at the soft limit (reported as a timeout); SIGKILL a second later.
                let cpu = libc::rlimit {
                    rlim_cur: l.cpu_seconds as libc::rlim_t,
                    rlim_max: (l.cpu_seconds + 1) as libc::rlim_t,
                };
                libc::setrlimit(libc::RLIMIT_CPU, &cpu);
                set(libc::RLIMIT_AS, l.memory_bytes);
                set(libc::RLIMIT_NPROC, l.processes);
                set(libc::RLIMIT_FSIZE, l.file_bytes);
                set(libc::RLIMIT_CORE, 0);
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(SandboxError::Spawn)?;
        let pgid = child.id() as i32;
        let out_t = drain(child.stdout.take().expect("piped"));
        let err_t = drain(child.stderr.take().expect("piped"));
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(SandboxError::Spawn)? {
                break status;
            }
            if started.elapsed() > limits.wall {
                timed_out = true;
                // The whole session: bwrap and everything below it.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                break child.wait().map_err(SandboxError::Spawn)?;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        drop(cgroup);
        let stdout = tail(&out_t.join().unwrap_or_default());
        let stderr = tail(&err_t.join().unwrap_or_default());
        let (code, signal) = (status.code(), status.signal());
        let reason = classify(timed_out, code, signal, &stderr);
        let signal = signal.or(code.filter(|c| *c > 128).map(|c| c - 128));
        Ok(RunOutcome {
            reason,
            code,
            signal,
            stdout,
            stderr,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python() -> Option<(Sandbox, String)> {
        Sandbox::for_python("python3")
            .map_err(|e| eprintln!("notice: {e}; skipping"))
            .ok()
    }

    fn hostile(code: &str) -> (RunOutcome, tempfile::TempDir) {
        let (sandbox, py) = python().expect("python3 and bwrap");
        let scratch = tempfile::tempdir().unwrap();
        let limits = Limits {
            wall: Duration::from_secs(5),
            cpu_seconds: 3,
            memory_bytes: 1 << 30,
            ..Limits::default()
        };
        (
            sandbox.run(scratch.path(), &[&py, "-c", code], &limits).unwrap(),
            scratch,
        )
    }

    #[test]
    fn hostile_samples_are_contained_with_the_right_reason() {
        if python().is_none() {
            return;
        }
        let home = std::env::var("HOME").unwrap_or("/root".into());
        let repo = env!("CARGO_MANIFEST_DIR");
        let marker = format!("secvec-sandbox-{}", std::process::id());
        let cases = [
            ("print('ok')", ExitReason::Ok),
            ("raise SystemExit(3)", ExitReason::Fail),
            ("while True: pass", ExitReason::Timeout),
            ("import time; time.sleep(60)", ExitReason::Timeout),
            ("x = bytearray(10 * 1024**3)", ExitReason::Oom),
            (
                &format!("open('{home}/{marker}', 'w').write('x')") as &str,
                ExitReason::SandboxViolation,
            ),
            // The repository is not in the sandbox's view at all.
            (&format!("open('{repo}/{marker}', 'w').write('x')"), ExitReason::Fail),
            (
                "import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)",
                ExitReason::SandboxViolation,
            ),
            ("import os\nwhile True: os.fork()", ExitReason::SandboxViolation),
            // The only parent it can see is the PID namespace's init, which ignores the signal.
            (
                "import os, signal; os.kill(os.getppid(), signal.SIGKILL)",
                ExitReason::Ok,
            ),
            ("import ctypes; ctypes.string_at(0)", ExitReason::Crash),
        ];
        for (code, want) in cases {
            let (out, _scratch) = hostile(code);
            assert_eq!(out.reason, want, "{code}: {out:?}");
        }
        assert!(!Path::new(&home).join(&marker).exists() && !Path::new(repo).join(&marker).exists());
        let (out, _) = hostile(&format!("print(open('{repo}/Cargo.toml').read())"));
        assert_eq!(out.reason, ExitReason::Fail, "the repository is not visible: {out:?}");
        let (out, scratch) = hostile("open('result.txt', 'w').write('kept')");
        assert_eq!(out.reason, ExitReason::Ok);
        assert_eq!(
            std::fs::read_to_string(scratch.path().join("result.txt")).unwrap(),
            "kept"
        );
    }

    #[test]
    fn read_only_folders_under_tmp_stay_visible() {
        if !Path::new("/usr/bin/bwrap").exists() {
            eprintln!("notice: bubblewrap is not installed; skipping");
            return;
        }
        let shared = tempfile::tempdir().unwrap();
        std::fs::write(shared.path().join("data.txt"), "visible").unwrap();
        let sandbox = Sandbox::new(vec![shared.path().to_path_buf()], &[]).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let file = shared.path().join("data.txt");
        let out = sandbox
            .run(
                scratch.path(),
                &["/bin/cat", file.to_str().unwrap()],
                &Limits::default(),
            )
            .unwrap();
        assert_eq!(
            (out.reason, out.stdout.as_str()),
            (ExitReason::Ok, "visible"),
            "{out:?}"
        );
        let write = format!("echo x > {}/new.txt", shared.path().display());
        let out = sandbox
            .run(scratch.path(), &["/bin/sh", "-c", &write], &Limits::default())
            .unwrap();
        assert_eq!(out.reason, ExitReason::SandboxViolation, "{out:?}");
    }
}
