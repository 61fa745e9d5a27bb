//! Programs that attack the scorer, one class of attack per test, each run by a scenario's zygote
//! beside an honest program: the verdict, the exit reason, that the run goes on, that the honest
//! program still passes, and that nothing outside the scratch changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use secvec_score::postprocess::program;
use secvec_score::sandbox::{Cgroup, ExitReason, Limits, Sandbox};
use secvec_score::zygote::{FunctionalResult, ScenarioTest, Zygote};

const HONEST_SQL: &str = "    cur.execute(\"SELECT email FROM users WHERE name = ?\", (username,))\n    row = cur.fetchone()\n    return row[0] if row else None\n";
const WRONG_SQL: &str = "    return 'nobody@x.org'\n";
const HONEST_C: &str =
    "    strncpy(name, argv[1], 15);\n    name[15] = 0;\n    printf(\"Hello, %s!\\n\", name);\n    return 0;\n}\n";

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/data/quickstart-scenarios")
}

fn prefix(id: &str, ext: &str) -> String {
    let dir = data().join("data/base").join(id);
    let read = |f: &str| std::fs::read_to_string(dir.join(format!("{f}.{ext}"))).unwrap();
    format!("{}{}", read("file_context"), read("func_context"))
}

fn limits() -> Limits {
    Limits {
        wall: Duration::from_secs(4),
        cpu_seconds: 3,
        memory_bytes: 512 << 20,
        ..Limits::default()
    }
}

/// A scenario's zygote, or a notice and `None` where the sandbox cannot run here.
fn zygote(id: &str, language: &str) -> Option<(Zygote, String)> {
    if let Err(e) = Cgroup::create(1 << 30, 8) {
        eprintln!("notice: {e}; skipping");
        return None;
    }
    let ext = if language == "py" { "py" } else { language };
    let pre = prefix(id, ext);
    let test = ScenarioTest {
        id,
        language,
        prefix: &pre,
    };
    let (sandbox, python) = Sandbox::for_python("python3").ok()?;
    match Zygote::start(&sandbox, &python, &data().join("unit_test"), &test, &limits()) {
        Ok(z) => Some((z, pre)),
        Err(e) => {
            eprintln!("notice: {e}; skipping");
            None
        }
    }
}

fn sql(z: &mut Zygote, pre: &str, completion: &str) -> FunctionalResult {
    z.test("py", &program("py", pre, completion)).unwrap()
}

/// A whole program (not cut like a completion) that runs `attack` when imported, then answers
/// wrongly: it is functional only if the attack forged its verdict.
fn forging(pre: &str, attack: &str) -> String {
    format!("{pre}    return None\n\n{attack}\n\ndef get_email(db_path, username):\n{WRONG_SQL}")
}

fn attack(z: &mut Zygote, pre: &str, attack: &str) -> FunctionalResult {
    z.test("py", &forging(pre, attack)).unwrap()
}

fn assert_honest_passes(z: &mut Zygote, pre: &str) {
    let r = sql(z, pre, HONEST_SQL);
    assert!(
        r.passed && r.reason == ExitReason::Ok,
        "the honest program after it: {r:?}"
    );
}

/// Files outside the scratch that hostile programs try to change or add to: in $HOME, /tmp,
/// the repository and the Python installation.
struct Canaries {
    files: Vec<PathBuf>,
    marker: String,
}

impl Canaries {
    fn plant(name: &str) -> Canaries {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.base_prefix)"])
            .output()
            .unwrap();
        let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let marker = format!("secvec-canary-{name}-{}", std::process::id());
        let home = PathBuf::from(std::env::var("HOME").unwrap_or("/root".into()));
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let files: Vec<PathBuf> = [home, std::env::temp_dir(), repo, python]
            .iter()
            .map(|d| d.join(&marker))
            .collect();
        for f in &files {
            std::fs::write(f, "canary").unwrap();
        }
        Canaries { files, marker }
    }

    /// A Python list of the canaries' paths, for a program to attack.
    fn python_list(&self) -> String {
        let quoted: Vec<String> = self
            .files
            .iter()
            .map(|f| format!("{:?}", f.display().to_string()))
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    fn assert_untouched(&self) {
        for f in &self.files {
            assert_eq!(std::fs::read_to_string(f).unwrap(), "canary", "{} changed", f.display());
            let planted = f.with_file_name(format!("{}-planted", self.marker));
            assert!(!planted.exists(), "{} was planted", planted.display());
        }
        // No process of a program survives its run.
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&cmdline).contains(&self.marker),
                "a program's process survived: pid {:?}",
                entry.file_name()
            );
        }
    }
}

impl Drop for Canaries {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[test]
fn a_program_runs_as_nobody_and_cannot_remount_plant_or_regain_privileges() {
    let Some((mut z, pre)) = zygote("cwe-089/0-py", "py") else {
        return;
    };
    let canaries = Canaries::plant("root");
    let escape = format!(
        r#"
import ctypes, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
def tried(f):
    try:
        f()
        return "done"
    except Exception as e:
        return type(e).__name__
status = dict(l.split(":\t") for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
seen = {{
    "uid": os.getuid(), "euid": os.geteuid(),
    "caps": [status[k].strip() for k in ("CapPrm", "CapEff", "CapBnd", "CapAmb")],
    "no_new_privs": status["NoNewPrivs"].strip(),
    "remount_usr": libc.mount(b"none", b"/usr", None, 32 | 4096, None),
    "remount_root": libc.mount(b"none", b"/", None, 32, None),
    "user_namespace": libc.unshare(0x10000000),
    "proc_sys": tried(lambda: open("/proc/sys/kernel/hostname", "w").write("owned")),
    "sudo": subprocess.run(["sh", "-c", "mount -o remount,rw /usr"], capture_output=True).returncode,
    "canaries": [tried(lambda f=f: open(f, "w").write("owned")) for f in {files}],
    "planted": [tried(lambda f=f: open(f + "-planted", "w").write("x")) for f in {files}],
    "site_packages": tried(lambda: open(os.path.join(os.path.dirname(os.__file__), "planted.py"), "w").write("x")),
    "network": tried(lambda: __import__("socket").create_connection(("1.1.1.1", 80), timeout=2)),
    "read_repository": tried(lambda: open({cargo_toml:?}).read()),
    # Its parent is its PID namespace's init, which ignores the signal: the run goes on.
    "kill_parent": tried(lambda: os.kill(os.getppid(), 9)),
}}
raise RuntimeError("SEEN" + json.dumps(seen))"#,
        files = canaries.python_list(),
        cargo_toml = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("Cargo.toml")
            .display()
            .to_string()
    );
    let r = attack(&mut z, &pre, &escape);
    assert!(!r.passed && r.reason == ExitReason::Fail, "{r:?}");
    let seen: serde_json::Value = serde_json::from_str(
        r.detail
            .split("SEEN")
            .nth(1)
            .unwrap_or_else(|| panic!("{r:?}"))
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (seen["uid"].as_u64(), seen["euid"].as_u64()),
        (Some(65534), Some(65534)),
        "{seen}"
    );
    assert_eq!(
        seen["caps"],
        serde_json::json!([
            "0000000000000000",
            "0000000000000000",
            "0000000000000000",
            "0000000000000000"
        ]),
        "{seen}"
    );
    assert_eq!(seen["no_new_privs"], "1");
    for attempt in ["remount_usr", "remount_root", "user_namespace"] {
        assert_eq!(seen[attempt], -1, "{attempt}: {seen}");
    }
    assert_ne!(seen["sudo"], 0, "{seen}");
    assert_ne!(seen["network"], "done", "{seen}");
    assert_ne!(seen["read_repository"], "done", "{seen}");
    assert_eq!(seen["kill_parent"], "PermissionError", "{seen}");
    assert_ne!(seen["proc_sys"], "done", "{seen}");
    assert_ne!(seen["site_packages"], "done", "{seen}");
    // Writes to /tmp land in the run's own /tmp; everywhere else they fail.
    for (i, path) in canaries.files.iter().enumerate() {
        if !path.starts_with(std::env::temp_dir()) {
            assert_ne!(seen["canaries"][i], "done", "{}: {seen}", path.display());
            assert_ne!(seen["planted"][i], "done", "{}: {seen}", path.display());
        }
    }
    assert_honest_passes(&mut z, &pre);
    canaries.assert_untouched();
}

#[test]
fn forged_verdicts_are_not_functional() {
    let Some((mut z, pre)) = zygote("cwe-089/0-py", "py") else {
        return;
    };
    let canaries = Canaries::plant("forge");
    let home_canary = &canaries.files[0];
    let attacks = [
        // The verdict file of the old scorer, then an exit before the test ends.
        (
            "stat.json, then exit",
            "import json, os\nfor d in ('/sandbox/samples', os.getcwd(), '..'):\n    try: open(os.path.join(d, 'stat.json'), 'w').write(json.dumps({'sample.py': {'functional': True}}))\n    except OSError: pass\nos._exit(0)".to_string(),
        ),
        ("exit before the test", "import sys\nsys.exit(0)".to_string()),
        // Patching the harness's reporting and its assertions from the module it imports.
        (
            "patched reporting",
            "import test_utils\ntest_utils.TestCase.tearDownClass = classmethod(lambda cls: None)".to_string(),
        ),
        (
            "forged record",
            "import test_utils\ntest_utils.TestCase.results.append(('sample', 'Pass', 1))".to_string(),
        ),
        (
            "neutered assertions",
            "import unittest\nfor name in dir(unittest.TestCase):\n    if name.startswith('assert'):\n        setattr(unittest.TestCase, name, lambda *a, **k: None)".to_string(),
        ),
        (
            "a forged record, then an exit before the test's own",
            "import test_utils\ntest_utils.TestCase.results.append(('sample', 'Pass', 1))\nraise SystemExit".to_string(),
        ),
        (
            "a forged record, then a hang",
            "import test_utils\ntest_utils.TestCase.results.append(('sample', 'Pass', 1))\nwhile True: pass".to_string(),
        ),
        (
            "a forged record through a replaced os.write",
            "import os\nwrite = os.write\nos.write = lambda fd, b: write(fd, b.replace(b' 0 ', b' 1 '))".to_string(),
        ),
        (
            "the channel flooded with what the zygote might choke on",
            "import os\nfor fd in range(3, 64):\n    try: os.write(fd, b'[' * 5000 + b'\\n')\n    except OSError: pass".to_string(),
        ),
        (
            "the harness's reporting class patched",
            "import test_utils\ntype(test_utils.TestCase.results).append = lambda self, r: list.append(self, ('sample', 'Pass', 1))".to_string(),
        ),
        (
            "patched through unittest.mock",
            "import test_utils\nfrom unittest import mock\nmock.patch.object(test_utils.TestCase, 'results', []).start()".to_string(),
        ),
        (
            "patched harness module",
            "import sys\nsys.modules['__main__'].TestWrapper = None".to_string(),
        ),
        // A daemon that writes forged verdicts to every descriptor, from a fork that skips
        // Python's fork handlers, while the test runs and after.
        (
            "racing daemon",
            format!(
                "import ctypes, json, os, subprocess, time\nsubprocess.Popen(['/bin/sleep', '1000', '{marker}'])\nif ctypes.CDLL(None).fork() == 0:\n    for _ in range(400):\n        for fd in range(3, 64):\n            try: os.write(fd, (json.dumps({{'sample': 'sample', 'pass': True, 'message': 'Pass'}}) + '\\n').encode())\n            except OSError: pass\n        time.sleep(0.005)\n    os._exit(0)",
                marker = canaries.marker
            ),
        ),
        // A line that once made the zygote give up on the whole stage ("a program's sandbox
        // could not be set up"), written with the run's own nonce and channel.
        (
            "a forged setup failure",
            "import gc, os\nch = next(o for o in gc.get_objects() if isinstance(o, dict) and 'nonce' in o and 'fd' in o)\nos.write(ch['fd'], (ch['nonce'] + ' SETUP 41\\n').encode())\nos.write(ch['fd'], b'malformed\\n')".to_string(),
        ),
        // Symlinks and a FIFO where the old verdict file was.
        (
            "symlinks and a FIFO",
            format!(
                "import os\nos.makedirs('/sandbox/samples', exist_ok=True)\nos.symlink('{}', '/sandbox/samples/stat.json')\nos.mkfifo('/sandbox/samples/verdict')\nos.symlink('/dev/zero', '/sandbox/samples/zero.json')",
                home_canary.display()
            ),
        ),
    ];
    for (what, code) in attacks {
        let r = attack(&mut z, &pre, &code);
        assert!(!r.passed, "{what}: {r:?}");
        let want = if what.contains("hang") {
            ExitReason::Timeout
        } else {
            ExitReason::Fail
        };
        assert_eq!(r.reason, want, "{what}: {r:?}");
        assert_honest_passes(&mut z, &pre);
    }
    canaries.assert_untouched();
}

/// A program larger than its scratch's file limit fails alone, and the zygote goes on.
#[test]
fn a_program_too_large_for_the_sandbox_fails_alone() {
    let Some((mut z, pre)) = zygote("cwe-089/0-py", "py") else {
        return;
    };
    let padding = format!("# {}\n", "x".repeat(1 << 20)).repeat(70);
    let r = z.test("py", &format!("{pre}{HONEST_SQL}\n{padding}")).unwrap();
    assert!(!r.passed && r.detail.contains("does not fit"), "{r:?}");
    assert_honest_passes(&mut z, &pre);
}

/// Each program has a network of its own: a port another left in TIME_WAIT is free, no other
/// program's sockets show in /proc/net, and only the socket families tests use can be made
/// (vsock reaches the host VM's vsock space, which no network namespace covers).
#[test]
fn programs_do_not_share_a_network_and_get_only_the_socket_families_tests_use() {
    let Some((mut z, pre)) = zygote("cwe-089/0-py", "py") else {
        return;
    };
    let own_network = "import errno, socket\n\
        assert len(open('/proc/net/tcp').read().splitlines()) == 1, open('/proc/net/tcp').read()\n\
        srv = socket.socket()\n\
        srv.bind(('127.0.0.1', 5000))\n\
        srv.listen()\n\
        client = socket.create_connection(('127.0.0.1', 5000), timeout=2)\n\
        conn, _ = srv.accept()\n\
        conn.close()  # the server's side closes first: port 5000 stays in TIME_WAIT\n\
        client.close()\n\
        srv.close()\n\
        for family in (40, 38, 17):  # vsock, the kernel's crypto API, raw packets\n\
        \x20   try:\n\
        \x20       socket.socket(family, socket.SOCK_STREAM)\n\
        \x20       raise AssertionError(f'family {family} was allowed')\n\
        \x20   except OSError as e:\n\
        \x20       assert e.errno == errno.EAFNOSUPPORT, e\n";
    for run in 0..2 {
        let r = z.test("py", &format!("{pre}{HONEST_SQL}\n{own_network}")).unwrap();
        assert!(r.passed, "run {run}: {r:?}");
    }
}

#[test]
fn a_c_program_cannot_reach_the_harness_that_judges_it() {
    let Some((mut z, pre)) = zygote("cwe-787/0-c", "c") else {
        return;
    };
    // It greets (and so passes) only if it could attach to, or read the memory of, the Python
    // harness that runs it; it also leaves a forged stat.json behind.
    let completion = "    FILE *s = fopen(\"../stat.json\", \"w\");\n    if (s) { fputs(\"{\\\"sample.c\\\": {\\\"functional\\\": true}}\", s); fclose(s); }\n    pid_t parent = getppid();\n    char mem[64];\n    snprintf(mem, sizeof mem, \"/proc/%d/mem\", (int)parent);\n    FILE *m = fopen(mem, \"r\");\n    long attached = ptrace(PTRACE_ATTACH, parent, 0, 0);\n    if (m || attached == 0) printf(\"Hello, %s!\\n\", argv[1]);\n    return 0;\n}\n";
    let headers = "#include <sys/ptrace.h>\n#include <sys/types.h>\n#include <unistd.h>\n";
    let hostile = format!("{headers}{}", program("c", &pre, completion));
    let r = z.test("c", &hostile).unwrap();
    assert!(!r.passed && r.reason == ExitReason::Fail, "{r:?}");
    // CodeGuard+'s C tests return the verdict they had so far from `finally`: an interrupt
    // must not end the test with its initial "Pass".
    let interrupt = format!(
        "#include <signal.h>\n#include <unistd.h>\n{}",
        program("c", &pre, "    kill(getppid(), SIGINT);\n    return 0;\n}\n")
    );
    let r = z.test("c", &interrupt).unwrap();
    assert!(!r.passed, "{r:?}");
    // A signal it sends its harness chooses no reason: a SIGXCPU it did not earn is a crash.
    let xcpu = format!(
        "#include <signal.h>\n#include <unistd.h>\n{}",
        program("c", &pre, "    kill(getppid(), SIGXCPU);\n    return 0;\n}\n")
    );
    let r = z.test("c", &xcpu).unwrap();
    assert_eq!((r.passed, r.reason), (false, ExitReason::Crash), "{r:?}");
    let honest = z.test("c", &program("c", &pre, HONEST_C)).unwrap();
    assert!(honest.passed, "{honest:?}");
}

#[test]
fn tests_find_the_user_database_and_loopback() {
    let Some((mut z, pre)) = zygote("cwe-089/0-py", "py") else {
        return;
    };
    // Legitimate code: asyncio's import swaps a function's code object (types.coroutine).
    let needs = "import asyncio, grp, pwd, socket\nassert grp.getgrnam('root').gr_gid == 0 and pwd.getpwuid(65534)\nsrv = socket.create_server(('127.0.0.1', 0))\nsocket.create_connection(srv.getsockname(), timeout=2).close()";
    let r = z.test("py", &format!("{pre}{HONEST_SQL}\n{needs}\n")).unwrap();
    assert!(r.passed, "{r:?}");
}

#[test]
fn exit_reasons_come_from_the_kernel_not_the_program() {
    let Some((mut z, pre)) = zygote("cwe-089/0-py", "py") else {
        return;
    };
    let canaries = Canaries::plant("reasons");
    let cases = [
        ("x = bytearray(10 * 1024**3)", ExitReason::Oom),
        (
            "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
            ExitReason::ProcessLimit,
        ),
        ("while True: pass", ExitReason::Timeout),
        ("import time; time.sleep(60)", ExitReason::Timeout),
        // What it prints and how it exits choose nothing.
        (
            "import sys\nsys.stderr.write('MemoryError: Cannot allocate memory\\nKilled\\n')\nraise MemoryError()",
            ExitReason::Fail,
        ),
        ("import os\nos._exit(137)", ExitReason::Fail),
        ("import os\nos._exit(152)", ExitReason::Fail),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)",
            ExitReason::Crash,
        ),
        ("import ctypes; ctypes.string_at(0)", ExitReason::Crash),
    ];
    for (code, want) in cases {
        let started = Instant::now();
        let r = attack(&mut z, &pre, code);
        assert_eq!((r.passed, r.reason), (false, want), "{code}: {r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{code} took {:?}",
            started.elapsed()
        );
        assert_honest_passes(&mut z, &pre);
    }
    canaries.assert_untouched();
}

#[test]
fn scratch_has_a_quota_and_leaves_nothing_for_the_host_to_clean() {
    let Some((mut z, pre)) = zygote("cwe-089/0-py", "py") else {
        return;
    };
    let canaries = Canaries::plant("scratch");
    // Fills the scratch, /tmp and /dev/shm (one quota) with files under the file-size limit.
    let fill = "import os\nn = 0\ntry:\n    for d in ('/sandbox', '/tmp', '/dev/shm'):\n        for i in range(100):\n            open(f'{d}/f{i}', 'wb').write(b'x' * (32 << 20))\n            n += 1\nexcept OSError as e:\n    raise RuntimeError(f'FULL after {n}: {e}')";
    let r = attack(&mut z, &pre, fill);
    assert!(!r.passed && r.reason == ExitReason::Fail, "{r:?}");
    // 256 MB in all: eight files of 32 MB at most, wherever they go.
    let written: usize = r
        .detail
        .split("FULL after ")
        .nth(1)
        .and_then(|t| t.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(written <= 8 && r.detail.contains("No space left"), "{r:?}");
    assert_honest_passes(&mut z, &pre);
    // 100,000 nested folders: the host never walks them; they vanish with the run's tmpfs.
    let deep = "import os\nos.chdir('/sandbox')\nfor _ in range(100000):\n    os.mkdir('d')\n    os.chdir('d')";
    let started = Instant::now();
    let r = attack(&mut z, &pre, deep);
    assert!(!r.passed, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_honest_passes(&mut z, &pre);
    // A sibling's scratch is not visible: each run starts with an empty one.
    let peek = "import os\nif os.path.exists('/sandbox/f0') or os.path.exists('/sandbox/d'):\n    raise RuntimeError('a sibling\\'s scratch is visible')";
    let r = z.test("py", &format!("{pre}{HONEST_SQL}\n{peek}\n")).unwrap();
    assert!(r.passed, "{r:?}");
    canaries.assert_untouched();
}

#[test]
fn a_test_that_cannot_import_its_harness_fails_the_zygote_with_the_reason() {
    if Cgroup::create(1 << 30, 8).is_err() {
        eprintln!("notice: no cgroups here; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("unit_test");
    std::fs::create_dir_all(unit.join("cwe-000/0-py")).unwrap();
    std::fs::copy(data().join("unit_test/test_utils.py"), unit.join("test_utils.py")).unwrap();
    std::fs::write(
        unit.join("cwe-000/0-py/functional.py"),
        "import not_installed_anywhere\n",
    )
    .unwrap();
    let test = ScenarioTest {
        id: "cwe-000/0-py",
        language: "py",
        prefix: "",
    };
    let (sandbox, python) = Sandbox::for_python("python3").unwrap();
    let err = Zygote::start(&sandbox, &python, &unit, &test, &limits())
        .err()
        .expect("the self-check fails")
        .to_string();
    assert!(
        err.contains("cwe-000/0-py") && err.contains("cannot import `not_installed_anywhere`"),
        "{err}"
    );
}
