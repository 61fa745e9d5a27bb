//! Runs untrusted code — generated programs, and every tool that parses them — under
//! bubblewrap: a read-only view of the system and the interpreters, size-capped tmpfs scratch
//! (also `/tmp` and `/dev/shm`), no network, its own PID, IPC and UTS namespaces, an
//! unprivileged uid with no capabilities and `no_new_privs`, and limits on memory, processes
//! (a cgroup per run), CPU time and file size (rlimits), and wall-clock time.
//!
//! Why a run ended comes from the kernel: the cgroup's OOM-kill and process-limit counters, the
//! signal that ended it (SIGXCPU and SIGXFSZ are the rlimits), or the wall clock — never from
//! what the program printed. The host never opens anything inside the scratch: it lives only in
//! the sandbox's mount namespace and vanishes with it.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use super::cgroup::{Cgroup, CgroupError, Events};

/// The uid and gid untrusted code runs as (`nobody`).
pub const UNPRIVILEGED: u32 = 65534;

/// Where the scratch tmpfs appears inside the sandbox (the working directory and HOME of tests).
pub const SCRATCH: &str = "/sandbox";

#[derive(Clone, Debug)]
pub struct Limits {
    pub cpu_seconds: u64,
    pub memory_bytes: u64,
    pub processes: u64,
    pub file_bytes: u64,
    /// Size of the scratch tmpfs (and, separately, of `/tmp` and `/dev/shm`).
    pub scratch_bytes: u64,
    pub wall: Duration,
    /// How much of stdout and of stderr is kept; a tool whose output is longer fails.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_seconds: 10,
            memory_bytes: 2 << 30,
            processes: 64,
            file_bytes: 64 << 20,
            scratch_bytes: 256 << 20,
            wall: Duration::from_secs(20),
            output_bytes: 256 << 20,
        }
    }
}

pub use secvec_artifacts::scores::ExitReason;

/// The reason of a run that did not succeed, from what the kernel recorded.
pub fn failure_reason(events: Events, timed_out: bool, signal: Option<i32>) -> ExitReason {
    if events.oom_kills > 0 {
        ExitReason::Oom
    } else if events.process_limit_hits > 0 {
        ExitReason::ProcessLimit
    } else if timed_out || signal == Some(libc::SIGXCPU) {
        ExitReason::Timeout
    } else if signal == Some(libc::SIGXFSZ) {
        ExitReason::FileLimit
    } else if signal.is_some() {
        ExitReason::Crash
    } else {
        ExitReason::Fail
    }
}

/// The reason a test did not pass. A program can signal its own test process, so a SIGXCPU
/// counts as a timeout only when the process had used its CPU time, and a SIGXFSZ (which the
/// Python test process ignores, so the kernel never ends it with one) is a crash.
pub fn test_failure_reason(events: Events, timed_out: bool, signal: Option<i32>, cpu_exhausted: bool) -> ExitReason {
    let sent = |s: i32| (s == libc::SIGXCPU && !cpu_exhausted) || s == libc::SIGXFSZ;
    match failure_reason(events, timed_out, signal) {
        ExitReason::Timeout | ExitReason::FileLimit if !timed_out && signal.is_some_and(sent) => ExitReason::Crash,
        reason => reason,
    }
}

#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub reason: ExitReason,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// stdout or stderr was longer than [`Limits::output_bytes`].
    pub truncated: bool,
    pub seconds: f64,
}

impl RunOutcome {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("bubblewrap (`bwrap`) is not installed; scripts/setup.sh installs it (Debian package `bubblewrap`)")]
    NoBwrap,
    #[error("`setpriv` (util-linux) is not installed; the sandbox needs it to drop to an unprivileged uid")]
    NoSetpriv,
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("starting the sandbox: {0}")]
    Spawn(std::io::Error),
    #[error("cannot run `{python}` to find its installation: {what}")]
    Python { python: String, what: String },
    #[error("the scoring harness for {scenario} failed: {what}")]
    Harness { scenario: String, what: String },
}

/// What every sandbox sees read-only, besides what is given to [`Sandbox::new`]: the system,
/// the user and host databases that tests query (`getent group root`), and the CA certificates
/// (semgrep wants them even offline).
const SYSTEM: [&str; 9] = [
    "/usr",
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/ld.so.cache",
    "/etc/localtime",
];

#[derive(Clone)]
pub struct Sandbox {
    bwrap: PathBuf,
    setpriv: PathBuf,
    read_only: Vec<PathBuf>,
    path: String,
}

/// Reads a pipe to its end on its own thread, keeping at most `cap` bytes (and whether more came).
fn drain(mut r: impl Read + Send + 'static, cap: usize) -> std::thread::JoinHandle<(Vec<u8>, bool)> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        let mut over = false;
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let room = cap.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..n.min(room)]);
            over |= n > room;
        }
        (buf, over)
    })
}

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// A temporary folder the host writes and the sandbox's unprivileged uid may read.
pub fn shared_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// Sets the resource limits of the calling process (between fork and exec: async-signal-safe).
fn set_rlimits(limits: &Limits) {
    let set = |res, soft: u64, hard: u64| {
        let r = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        unsafe { libc::setrlimit(res, &r) };
    };
    // SIGXCPU at the soft limit (a timeout); SIGKILL a second later.
    set(libc::RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1);
    set(libc::RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes);
    set(libc::RLIMIT_CORE, 0, 0);
}

/// Moves the calling process into the cgroups whose `cgroup.procs` files are given (between
/// fork and exec: async-signal-safe).
pub(crate) fn join_cgroup(procs: &[std::ffi::CString]) -> std::io::Result<()> {
    for p in procs {
        let fd = unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let ok = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } == 1;
        unsafe { libc::close(fd) };
        if !ok {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Sandbox {
    /// A sandbox that also sees `read_only` (e.g. a Python installation and a test folder), and
    /// finds programs in `bin_dirs` first.
    pub fn new(read_only: Vec<PathBuf>, bin_dirs: &[PathBuf]) -> Result<Sandbox, SandboxError> {
        let bwrap = find(&["/usr/bin/bwrap", "/bin/bwrap"]).ok_or(SandboxError::NoBwrap)?;
        let setpriv = find(&["/usr/bin/setpriv", "/bin/setpriv"]).ok_or(SandboxError::NoSetpriv)?;
        let mut path: Vec<String> = bin_dirs.iter().map(|p| p.display().to_string()).collect();
        path.extend(["/usr/local/bin".into(), "/usr/bin".into(), "/bin".into()]);
        Ok(Sandbox {
            bwrap,
            setpriv,
            read_only,
            path: path.join(":"),
        })
    }

    /// A sandbox that can run the Python interpreter `python` (a name on PATH or a path): it
    /// sees the interpreter's installation and virtual environment read-only. Returns the
    /// interpreter's absolute path with it.
    pub fn for_python(python: &str) -> Result<(Sandbox, String), SandboxError> {
        let (dirs, exe) = python_dirs(python)?;
        let bins: Vec<PathBuf> = dirs.iter().map(|d| d.join("bin")).collect();
        Ok((Sandbox::new(dirs, &bins)?, exe))
    }

    /// The same sandbox, also seeing `dirs` read-only (at the same paths).
    pub fn seeing(&self, dirs: impl IntoIterator<Item = PathBuf>) -> Sandbox {
        let mut s = self.clone();
        for d in dirs {
            if !s.read_only.contains(&d) {
                s.read_only.push(d);
            }
        }
        s
    }

    /// The same sandbox, finding programs in `bin_dirs` first.
    pub fn with_bins(&self, bin_dirs: &[PathBuf]) -> Sandbox {
        let mut s = self.clone();
        let first: Vec<String> = bin_dirs.iter().map(|p| p.display().to_string()).collect();
        s.path = first
            .into_iter()
            .chain([self.path.clone()])
            .collect::<Vec<_>>()
            .join(":");
        s
    }

    /// bubblewrap's arguments for a view of the system, `self.read_only` and `binds` (read-only
    /// unless marked writable), with `caps` kept for the command (it must drop them itself).
    pub(crate) fn bwrap_command(
        &self,
        binds: &[(PathBuf, PathBuf, bool)],
        caps: &[&str],
        scratch_bytes: u64,
        cwd: &str,
    ) -> Command {
        let mut cmd = Command::new(&self.bwrap);
        cmd.args(["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]);
        cmd.args(["--die-with-parent", "--new-session", "--clearenv"]);
        cmd.args(["--cap-drop", "ALL"]);
        for cap in caps {
            cmd.args(["--cap-add", cap]);
        }
        cmd.args(["--proc", "/proc", "--dev", "/dev"]);
        // The private scratch folders first, so that a folder bound below one of them (a
        // checkout and its environments in /tmp) stays visible rather than shadowed.
        for dir in ["/tmp", SCRATCH, "/dev/shm"] {
            cmd.args(["--perms", "01777", "--size"])
                .arg(scratch_bytes.to_string())
                .args(["--tmpfs", dir]);
        }
        for link in ["lib", "lib64", "bin", "sbin"] {
            if Path::new("/usr").join(link).exists() {
                cmd.args(["--symlink", &format!("usr/{link}"), &format!("/{link}")]);
            }
        }
        let mut all: Vec<(PathBuf, PathBuf, bool)> = SYSTEM
            .iter()
            .map(PathBuf::from)
            .chain(self.read_only.iter().cloned())
            .filter(|d| d.exists())
            .map(|d| (d.clone(), d, false))
            .collect();
        all.extend(binds.iter().cloned());
        // bubblewrap copies the modes of a bound folder's parents (/root is 0700); the
        // unprivileged uid must be able to walk down to every bound folder.
        let mut parents: Vec<PathBuf> = all
            .iter()
            .flat_map(|(_, at, _)| at.ancestors().skip(1).map(Path::to_path_buf).collect::<Vec<_>>())
            .filter(|p| p != Path::new("/"))
            .collect();
        parents.sort_by_key(|p| p.components().count());
        parents.dedup();
        for p in &parents {
            cmd.args(["--perms", "0755", "--dir"]).arg(p);
        }
        for (host, at, writable) in &all {
            cmd.arg(if *writable { "--bind" } else { "--ro-bind" })
                .arg(host)
                .arg(at);
        }
        cmd.args(["--remount-ro", "/", "--chdir", cwd]);
        for (k, v) in [
            ("HOME", SCRATCH),
            ("TMPDIR", SCRATCH),
            ("PATH", &self.path),
            ("LANG", "C.UTF-8"),
            ("PYTHONDONTWRITEBYTECODE", "1"),
            ("SEMGREP_SEND_METRICS", "off"),
        ] {
            cmd.args(["--setenv", k, v]);
        }
        cmd
    }

    /// Runs the tool `argv` (a program that reads untrusted code) as the unprivileged uid, with
    /// `dirs` visible read-only at their own paths, `stdin` as its input, in `cwd`.
    pub fn run(
        &self,
        argv: &[&str],
        dirs: &[PathBuf],
        cwd: &str,
        stdin: Option<Vec<u8>>,
        limits: &Limits,
    ) -> Result<RunOutcome, SandboxError> {
        let binds: Vec<(PathBuf, PathBuf, bool)> = dirs.iter().map(|d| (d.clone(), d.clone(), false)).collect();
        let mut cmd = self.bwrap_command(
            &binds,
            &["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"],
            limits.scratch_bytes,
            cwd,
        );
        let filter = seccomp_fd().map_err(SandboxError::Spawn)?;
        cmd.arg("--seccomp").arg(filter.as_raw_fd().to_string());
        let id = UNPRIVILEGED.to_string();
        cmd.arg("--")
            .arg(&self.setpriv)
            .args(["--reuid", &id, "--regid", &id, "--clear-groups"])
            .args(["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"])
            .args(argv);
        let cgroup = Cgroup::create(limits.memory_bytes, limits.processes)?;
        run_in(cmd, &cgroup, stdin, limits, Some(filter.as_raw_fd()))
    }
}

/// The seccomp filter in a memory file for bubblewrap's `--seccomp`; close-on-exec, so that only
/// the sandbox it is handed to inherits it.
fn seccomp_fd() -> std::io::Result<OwnedFd> {
    let fd = unsafe { libc::memfd_create(c"secvec-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(&super::seccomp::filter())?;
    std::io::Seek::rewind(&mut file)?;
    Ok(file.into())
}

/// The folders of a Python interpreter's installation and virtual environment, and its path.
fn python_dirs(python: &str) -> Result<(Vec<PathBuf>, String), SandboxError> {
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
    Ok((dirs, exe))
}

/// Starts `cmd` (a bubblewrap command) in a new session inside `cgroup` (a new one), feeds it
/// `stdin`, and waits for it within the wall-clock limit, then kills whatever is left of it.
fn run_in(
    mut cmd: Command,
    cgroup: &Cgroup,
    stdin: Option<Vec<u8>>,
    limits: &Limits,
    inherit: Option<RawFd>,
) -> Result<RunOutcome, SandboxError> {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let procs = cgroup.procs_files();
    let l = limits.clone();
    // SAFETY: only async-signal-safe calls (setsid, umask, fcntl, open, write, close, setrlimit)
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::umask(0o022);
            if let Some(fd) = inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            join_cgroup(&procs)?;
            set_rlimits(&l);
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(SandboxError::Spawn)?;
    let pgid = child.id() as i32;
    let feeder = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().expect("piped");
        // A program that stops reading just gets a broken pipe.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let out_t = drain(child.stdout.take().expect("piped"), limits.output_bytes);
    let err_t = drain(child.stderr.take().expect("piped"), limits.output_bytes);
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(SandboxError::Spawn)? {
            break status;
        }
        if started.elapsed() > limits.wall {
            timed_out = true;
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            cgroup.kill_all();
            break child.wait().map_err(SandboxError::Spawn)?;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // Nothing of the run outlives it (a daemon it left would hold the pipes open).
    cgroup.kill_all();
    let (stdout, over_out) = out_t.join().unwrap_or_default();
    let (stderr, over_err) = err_t.join().unwrap_or_default();
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let events = cgroup.events();
    let (code, signal) = (status.code(), status.signal());
    // bubblewrap reports a command killed by signal N as exit code 128 + N.
    let signal = signal.or(code.filter(|c| *c > 128).map(|c| c - 128));
    let reason = if code == Some(0) && events == Events::default() && !timed_out {
        ExitReason::Ok
    } else {
        failure_reason(events, timed_out, signal)
    };
    Ok(RunOutcome {
        reason,
        code,
        signal,
        stdout,
        stderr,
        truncated: over_out || over_err,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The sandbox for python3, or a notice (and `None`) where it cannot run here.
    pub(crate) fn python() -> Option<(Sandbox, String)> {
        if let Err(e) = Cgroup::create(1 << 30, 8) {
            eprintln!("notice: {e}; skipping");
            return None;
        }
        Sandbox::for_python("python3")
            .map_err(|e| eprintln!("notice: {e}; skipping"))
            .ok()
    }

    /// A virtual environment of the sandbox's python3 in a folder under /tmp (where a checkout
    /// tried out there keeps its `.venv`), holding a package whose submodule and metadata are
    /// loaded only when a program asks for them. Returns the folder (kept while it lives) and
    /// the environment's interpreter.
    pub(crate) fn venv_under_tmp() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix("secvec-venv")
            .tempdir_in("/tmp")
            .unwrap();
        let venv = dir.path().join("checkout/.venv");
        let made = Command::new("python3")
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success());
        let out = Command::new(venv.join("bin/python"))
            .args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
            .output()
            .unwrap();
        let site = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        std::fs::create_dir_all(site.join("late_pkg")).unwrap();
        std::fs::write(site.join("late_pkg/__init__.py"), "").unwrap();
        std::fs::write(site.join("late_pkg/sub.py"), "VALUE = 42\n").unwrap();
        std::fs::create_dir_all(site.join("late_pkg-1.0.dist-info")).unwrap();
        std::fs::write(
            site.join("late_pkg-1.0.dist-info/METADATA"),
            "Metadata-Version: 2.1\nName: late-pkg\nVersion: 1.0\n",
        )
        .unwrap();
        (dir, venv.join("bin/python"))
    }

    /// Python that loads `late_pkg` of [`venv_under_tmp`] and prints what it found.
    pub(crate) const LOADS_LATE_PKG: &str =
        "import late_pkg.sub\nfrom importlib import metadata\nprint(late_pkg.sub.VALUE, metadata.version('late-pkg'))\n";

    fn quick() -> Limits {
        Limits {
            wall: Duration::from_secs(5),
            cpu_seconds: 3,
            memory_bytes: 512 << 20,
            ..Limits::default()
        }
    }

    fn tool(code: &str) -> RunOutcome {
        let (sandbox, py) = python().expect("checked");
        sandbox.run(&[&py, "-c", code], &[], SCRATCH, None, &quick()).unwrap()
    }

    #[test]
    fn tools_run_unprivileged_with_kernel_reasons() {
        if python().is_none() {
            return;
        }
        let who = tool("import os; s = open('/proc/self/status').read(); print(os.getuid(), os.getgid(), [l.split()[1] for l in s.splitlines() if l.startswith(('CapEff', 'CapBnd', 'NoNewPrivs'))])");
        assert_eq!(
            who.stdout_text().trim(),
            "65534 65534 ['0000000000000000', '0000000000000000', '1']",
            "{who:?}"
        );
        let cases = [
            ("print('ok')", ExitReason::Ok),
            ("raise SystemExit(3)", ExitReason::Fail),
            ("while True: pass", ExitReason::Timeout),
            ("import time; time.sleep(60)", ExitReason::Timeout),
            ("x = bytearray(2 * 1024**3)", ExitReason::Oom),
            ("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", ExitReason::ProcessLimit),
            ("import sys; sys.stderr.write('MemoryError: Cannot allocate memory'); sys.exit(1)", ExitReason::Fail),
            ("import ctypes; ctypes.string_at(0)", ExitReason::Crash),
            // Python ignores SIGXFSZ: the write fails and the program ends on its own.
            ("open('big', 'wb').write(b'x' * (65 << 20))", ExitReason::Fail),
            ("import signal; signal.signal(signal.SIGXFSZ, signal.SIG_DFL); open('big', 'wb').write(b'x' * (65 << 20))", ExitReason::FileLimit),
        ];
        for (code, want) in cases {
            let out = tool(code);
            assert_eq!(out.reason, want, "{code}: {out:?}");
        }
    }

    #[test]
    fn output_beyond_the_cap_is_cut_and_said() {
        let Some((sandbox, py)) = python() else { return };
        let limits = Limits {
            output_bytes: 1000,
            ..quick()
        };
        let out = sandbox
            .run(&[&py, "-c", "print('x' * 5000)"], &[], SCRATCH, None, &limits)
            .unwrap();
        assert!(out.truncated && out.stdout.len() == 1000, "{out:?}");
        let input = sandbox
            .run(
                &[&py, "-c", "import sys; print(len(sys.stdin.read()))"],
                &[],
                SCRATCH,
                Some(vec![b'a'; 100_000]),
                &quick(),
            )
            .unwrap();
        assert_eq!(input.stdout_text().trim(), "100000");
    }

    #[test]
    fn an_interpreter_under_tmp_sees_its_packages() {
        if python().is_none() {
            return;
        }
        let (_dir, venv_python) = venv_under_tmp();
        let (sandbox, py) = Sandbox::for_python(&venv_python.display().to_string()).unwrap();
        let out = sandbox
            .run(&[&py, "-c", LOADS_LATE_PKG], &[], SCRATCH, None, &quick())
            .unwrap();
        assert_eq!(
            (out.reason, out.stdout_text().trim()),
            (ExitReason::Ok, "42 1.0"),
            "{out:?}"
        );
    }

    #[test]
    fn read_only_folders_under_tmp_and_root_stay_visible_and_read_only() {
        let Some((sandbox, _)) = python() else { return };
        let shared = tempfile::tempdir().unwrap();
        std::fs::write(shared.path().join("data.txt"), "visible").unwrap();
        let file = shared.path().join("data.txt");
        let out = sandbox
            .run(
                &["/bin/cat", file.to_str().unwrap()],
                &[shared.path().into()],
                SCRATCH,
                None,
                &quick(),
            )
            .unwrap();
        assert_eq!(
            (out.reason, out.stdout_text().as_str()),
            (ExitReason::Ok, "visible"),
            "{out:?}"
        );
        let write = format!("echo x > {}/new.txt", shared.path().display());
        let out = sandbox
            .run(
                &["/bin/sh", "-c", &write],
                &[shared.path().into()],
                SCRATCH,
                None,
                &quick(),
            )
            .unwrap();
        assert_eq!(out.reason, ExitReason::Fail, "{out:?}");
        assert!(!shared.path().join("new.txt").exists());
    }
}
