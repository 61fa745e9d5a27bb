//! The host's side of the scoring zygote (`zygote.py`): one sandbox per scenario that imports
//! the scenario's test harness once and forks an isolated child per program, which costs a
//! fork instead of a fresh interpreter and its imports.
//!
//! The zygote runs as root of the sandbox's namespaces with only the capabilities it needs to
//! isolate its children (mounts, namespaces, a loopback per program, dropping to the
//! unprivileged uid, killing what a child leaves), and only trusted code: each child drops every capability before the program
//! it tests is written, let alone imported.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::cgroup::Cgroup;
use super::sandbox::{
    join_cgroup, shared_dir, test_failure_reason, ExitReason, Limits, Sandbox, SandboxError, UNPRIVILEGED,
};

const SCRIPT: &str = include_str!("zygote.py");

/// Where the zygote sees its files, the tests and the per-program cgroup.
const HOME: &str = "/secvec";

/// What a scenario's zygote needs to know about it.
pub struct ScenarioTest<'a> {
    pub id: &'a str,
    pub language: &'a str,
    /// The scenario's code prefix: its imports are made once in the zygote.
    pub prefix: &'a str,
}

/// A zygote's answer about one program.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Answer {
    /// Set instead of the rest when the program's sandbox could not be set up.
    error: Option<String>,
    /// The signal that ended the test process, and the CPU time it had used.
    signal: Option<i32>,
    cpu_seconds: f64,
    timed_out: bool,
    oom_kills: u64,
    process_limit_hits: u64,
    passed: bool,
    message: String,
    /// `message` is the test's own verdict (else: why there is none to trust).
    verdict: bool,
    stdout: String,
    stderr: String,
    seconds: f64,
}

#[derive(Deserialize)]
struct Greeting {
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    error: Option<String>,
    /// Modules of the scenario's prefix that do not import (programs using them will fail).
    #[serde(default)]
    missing: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct FunctionalResult {
    pub passed: bool,
    pub reason: ExitReason,
    /// What the test said about the failure, or the end of its output.
    pub detail: String,
    /// The unittest tests that failed or raised.
    pub failed_tests: Vec<String>,
    /// The last lines of stderr (a traceback) when the program failed.
    pub stderr_tail: String,
    pub seconds: f64,
    /// CPU time of the test process and what it waited for.
    pub cpu_seconds: f64,
}

/// A scenario's test folder as the sandbox sees it: a copy without the reference solution
/// (`test_case.*`, once `test_cases.py`), which a program must not be able to read.
fn copy_test(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry.path().strip_prefix(from).expect("under root");
        if rel.file_stem().is_some_and(|s| s == "test_case" || s == "test_cases") {
            continue;
        }
        let target = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)?;
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Makes what the host wrote in a folder readable by the unprivileged uid (a test folder may
/// hold files only their owner reads).
fn world_readable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(std::io::Error::other)?;
        let mode = if entry.file_type().is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

pub struct Zygote {
    scenario: String,
    limits: Limits,
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    /// Dropped in this order: the per-program cgroup, the zygote's, then their parent.
    _run: Cgroup,
    _own: Cgroup,
    _all: Cgroup,
    _dir: tempfile::TempDir,
    /// Prefix modules that do not import in the sandbox.
    pub missing: Vec<String>,
}

impl Zygote {
    /// Starts the zygote of `scenario`, whose test is in `unit_test/<id>/functional.py`, with
    /// the interpreter `python` that `sandbox` can run ([`Sandbox::for_python`]); fails with the
    /// harness's own message when it cannot import what the test needs (the self-check).
    pub fn start(
        sandbox: &Sandbox,
        python: &str,
        unit_test: &Path,
        scenario: &ScenarioTest,
        limits: &Limits,
    ) -> Result<Zygote, SandboxError> {
        let io = |e: std::io::Error| SandboxError::Harness {
            scenario: scenario.id.into(),
            what: format!("preparing its test folder: {e}"),
        };
        let dir = shared_dir().map_err(io)?;
        let tests = dir.path().join("tests/unit_test");
        copy_test(&unit_test.join(scenario.id), &tests.join(scenario.id)).map_err(io)?;
        std::fs::copy(unit_test.join("test_utils.py"), tests.join("test_utils.py")).map_err(io)?;
        std::fs::write(dir.path().join("zygote.py"), SCRIPT).map_err(io)?;
        world_readable(dir.path()).map_err(io)?;

        // The zygote, its children's runs, and a bound on them all.
        let all = Cgroup::create(limits.memory_bytes + (1 << 30), limits.processes + 64)?;
        let own = all.child("zygote", 1 << 30, 64)?;
        let run = all.child("run", limits.memory_bytes, limits.processes)?;

        let mut binds = vec![
            (dir.path().join("tests"), PathBuf::from(format!("{HOME}/tests")), false),
            (
                dir.path().join("zygote.py"),
                PathBuf::from(format!("{HOME}/zygote.py")),
                false,
            ),
        ];
        let cgroup_mount = format!("{HOME}/cgroup");
        for (i, d) in run.dirs().iter().enumerate() {
            binds.push((d.clone(), PathBuf::from(format!("{cgroup_mount}/{i}")), true));
        }
        let [(oom_file, oom_key), (pids_file, pids_key)] = run.event_files();
        let n = run.dirs().len();
        let config = json!({
            "tests": format!("{HOME}/tests"),
            "id": scenario.id,
            "language": scenario.language,
            "prefix": scenario.prefix,
            "uid": UNPRIVILEGED,
            "cgroup_mount": cgroup_mount,
            "cgroup_dirs": (0..n).map(|i| format!("{cgroup_mount}/{i}")).collect::<Vec<_>>(),
            "seccomp": super::seccomp::filter().iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "oom": [format!("{cgroup_mount}/0/{oom_file}"), oom_key],
            "pids": [format!("{cgroup_mount}/{}/{pids_file}", n - 1), pids_key],
            "limits": {
                "cpu_seconds": limits.cpu_seconds,
                "file_bytes": limits.file_bytes,
                "scratch_bytes": limits.scratch_bytes,
                "wall_seconds": limits.wall.as_secs_f64(),
            },
        });
        let caps = [
            "CAP_CHOWN",
            "CAP_SYS_ADMIN",
            "CAP_NET_ADMIN",
            "CAP_SETUID",
            "CAP_SETGID",
            "CAP_SETPCAP",
            "CAP_KILL",
        ];
        let mut cmd = sandbox.bwrap_command(&binds, &caps, limits.scratch_bytes, HOME);
        cmd.arg("--")
            .arg(python)
            .arg(format!("{HOME}/zygote.py"))
            .arg(config.to_string());
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let procs = own.procs_files();
        // SAFETY: only async-signal-safe calls (setsid, open, write, close) between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                libc::setsid();
                join_cgroup(&procs)
            });
        }
        let mut child = cmd.spawn().map_err(SandboxError::Spawn)?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err_pipe = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut chunk = [0u8; 8192];
            while let Ok(n) = std::io::Read::read(&mut err_pipe, &mut chunk) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&chunk[..n]);
                if all.len() > 64 << 10 {
                    all.drain(..all.len() - (16 << 10));
                }
            }
            all
        });
        let mut z = Zygote {
            scenario: scenario.id.into(),
            limits: limits.clone(),
            child,
            stdin,
            answers,
            stderr,
            _run: run,
            _own: own,
            _all: all,
            _dir: dir,
            missing: Vec::new(),
        };
        let greeting: Greeting = z.receive(Duration::from_secs(120))?;
        if let Some(what) = greeting.error {
            return Err(z.failed(what));
        }
        if !greeting.ready {
            return Err(z.failed("it did not start".into()));
        }
        z.missing = greeting.missing;
        Ok(z)
    }

    fn failed(&mut self, what: String) -> SandboxError {
        SandboxError::Harness {
            scenario: self.scenario.clone(),
            what,
        }
    }

    fn receive<T: for<'de> Deserialize<'de>>(&mut self, within: Duration) -> Result<T, SandboxError> {
        let line = match self.answers.recv_timeout(within) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(Vec::new));
                let text = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
                let tail: Vec<&str> = text.lines().rev().take(12).collect();
                let why = match e {
                    RecvTimeoutError::Timeout => "stopped answering",
                    RecvTimeoutError::Disconnected => "ended",
                };
                let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
                return Err(self.failed(format!("the scoring zygote {why}:\n{tail}")));
            }
        };
        serde_json::from_str(&line).map_err(|e| self.failed(format!("unreadable answer ({e}): {line}")))
    }

    /// Runs the scenario's test on `program` (saved as `sample.<ext>`).
    pub fn test(&mut self, ext: &str, program: &str) -> Result<FunctionalResult, SandboxError> {
        let job = json!({"file": format!("sample.{ext}"), "program": program});
        let sent = writeln!(self.stdin, "{job}").and_then(|_| self.stdin.flush());
        if let Err(e) = sent {
            return Err(self.failed(format!("cannot send it a program: {e}")));
        }
        let a: Answer = self.receive(self.limits.wall + Duration::from_secs(30))?;
        if let Some(what) = a.error {
            return Err(self.failed(what));
        }
        let events = super::cgroup::Events {
            oom_kills: a.oom_kills,
            process_limit_hits: a.process_limit_hits,
        };
        let reason = if a.passed {
            ExitReason::Ok
        } else {
            let cpu_exhausted = a.cpu_seconds + 0.05 >= self.limits.cpu_seconds as f64;
            test_failure_reason(events, a.timed_out, a.signal, cpu_exhausted)
        };
        let last = |text: &str, n: usize| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..]
                .iter()
                .map(|l| stable(l))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let said: Vec<&str> = a.stdout.lines().filter(|l| l.contains(": Fail")).collect();
        let detail = if a.passed {
            String::new()
        } else if a.verdict && !said.is_empty() {
            said.join("\n")
        } else {
            [a.message.clone(), last(&a.stdout, 5), last(&a.stderr, 5)]
                .into_iter()
                .filter(|t| !t.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        };
        // unittest names each failed or erroring test on stderr: "FAIL: test_x (module.Class.test_x)".
        let failed_tests = a
            .stderr
            .lines()
            .filter_map(|l| l.strip_prefix("FAIL: ").or_else(|| l.strip_prefix("ERROR: ")))
            .map(|t| t.split_whitespace().next().unwrap_or(t).to_string())
            .collect();
        Ok(FunctionalResult {
            passed: a.passed,
            reason,
            detail,
            failed_tests,
            stderr_tail: if a.passed { String::new() } else { last(&a.stderr, 20) },
            seconds: a.seconds,
            cpu_seconds: a.cpu_seconds,
        })
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A line of a program's output without what changes from run to run (unittest's timing,
/// object addresses), so a verdict's record is the same bytes when scoring reruns.
fn stable(line: &str) -> String {
    let line = match line.strip_prefix("Ran ").and_then(|r| r.split_once(" in ")) {
        Some((tests, time)) if time.ends_with('s') => format!("Ran {tests}"),
        _ => line.to_string(),
    };
    let mut out = String::with_capacity(line.len());
    let mut rest = line.as_str();
    while let Some(i) = rest.find("0x") {
        out.push_str(&rest[..i + 2]);
        let hex = rest[i + 2..].bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex >= 8 {
            out.push('…');
        } else {
            out.push_str(&rest[i + 2..i + 2 + hex]);
        }
        rest = &rest[i + 2 + hex..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::tests::{python, venv_under_tmp, LOADS_LATE_PKG};

    /// The quickstart's SQL scenario: its folder, id and prefix, and an honest completion.
    fn sql_scenario() -> (PathBuf, &'static str, String, &'static str) {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/data/quickstart-scenarios");
        let id = "cwe-089/0-py";
        let base = data.join("data/base").join(id);
        let read = |f: &str| std::fs::read_to_string(base.join(f)).unwrap();
        let prefix = read("file_context.py") + &read("func_context.py");
        let honest = "    cur.execute(\"SELECT email FROM users WHERE name = ?\", (username,))\n    row = cur.fetchone()\n    return row[0] if row else None\n";
        (data.join("unit_test"), id, prefix, honest)
    }

    /// What a program loads after the zygote forked it (package metadata, a submodule) is found
    /// where the interpreter lives, even under /tmp, which each program gets a private copy of.
    #[test]
    fn programs_load_late_from_an_interpreter_under_tmp() {
        if python().is_none() {
            return;
        }
        let (_dir, venv_python) = venv_under_tmp();
        let (sandbox, py) = Sandbox::for_python(&venv_python.display().to_string()).unwrap();
        let (unit_test, id, prefix, honest) = sql_scenario();
        let test = ScenarioTest {
            id,
            language: "py",
            prefix: &prefix,
        };
        let mut zygote = Zygote::start(&sandbox, &py, &unit_test, &test, &Limits::default()).unwrap();
        let program = format!("{LOADS_LATE_PKG}{}", crate::postprocess::program("py", &prefix, honest));
        let r = zygote.test("py", &program).unwrap();
        assert!(r.passed, "{r:?}");
    }

    #[test]
    fn output_lines_lose_what_changes_between_runs() {
        assert_eq!(super::stable("Ran 1 test in 0.003s"), "Ran 1 test");
        assert_eq!(super::stable("Ran 12 tests in 1.250s"), "Ran 12 tests");
        assert_eq!(
            super::stable("<function read at 0x7f3c2a1b9d30> and 0x1f"),
            "<function read at 0x…> and 0x1f"
        );
        assert_eq!(
            super::stable("Ran out of time in the loop"),
            "Ran out of time in the loop"
        );
    }
}
