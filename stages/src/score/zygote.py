"""secvec's scoring zygote: runs one scenario's functional test on many programs.

It starts inside bubblewrap as root of the sandbox's own mount, PID and network namespaces, and
runs only trusted code: it imports the test harness and its packages once, then forks one child
per program. Each child gets its own mount, PID, IPC, network and UTS namespaces, a size-capped
tmpfs for its scratch, /tmp and /dev/shm, and the per-program cgroup; it then drops to an
unprivileged uid with no capabilities and no_new_privs before any of the program's code runs.

Protocol: argv[1] is the JSON configuration; each stdin line is a job {"n", "file", "program"};
each stdout line is {"ready": true} or {"error": "..."} once, then one result per job.
The verdict reaches this process through a pipe, never through a file the program could write.
"""

import ast
import ctypes
import importlib
import json
import os
import re
import resource
import runpy
import select
import shutil
import signal
import struct
import sys
import time
import types
import unittest

CONFIG = json.loads(sys.argv[1])
TESTS = CONFIG["tests"]  # read-only: unit_test/<id>/ and unit_test/test_utils.py
SCENARIO = CONFIG["id"]
LIMITS = CONFIG["limits"]
UID = GID = CONFIG["uid"]
CGROUP_DIRS = CONFIG["cgroup_dirs"]  # the per-program cgroup, one folder per hierarchy
COUNTERS = (CONFIG["oom"], CONFIG["pids"])  # (events file, key) of OOM kills, process-limit hits
SCRATCH = "/sandbox"
TAIL = 4096

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 22, 24, 38
SECCOMP_MODE_FILTER = 2

# The protocol channel is a private copy of stdout; fd 1 becomes stderr so that nothing the
# harness's packages print can corrupt it.
PROTO = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)


def check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source, target, fstype, flags, data=None):
    check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def send(message):
    PROTO.write(json.dumps(message) + "\n")


# ---- Start-up: import the harness and what it needs, once (the self-check) -----------------

UNIT = os.path.join(TESTS, "unit_test")
FUNCTIONAL = os.path.join(UNIT, SCENARIO, "functional.py")


def imported_names(source):
    """Top-level modules a test imports (functional.py, test_utils.py)."""
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def prefix_imports(prefix):
    """Modules the scenario's own code imports (its prefix may not parse on its own)."""
    return re.findall(r"^(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", prefix, re.M)


def start():
    """Imports what the test needs (failing with why when it cannot) and, as far as they
    import, the modules of the scenario's code; returns those that do not."""
    sys.path.insert(0, UNIT)
    sys.path.insert(1, os.path.dirname(FUNCTIONAL))  # helpers beside functional.py
    needed = imported_names(open(FUNCTIONAL).read()) + imported_names(
        open(os.path.join(UNIT, "test_utils.py")).read()
    )
    if CONFIG["language"] != "py" and shutil.which("gcc") is None:
        raise RuntimeError("the C tests need `gcc`, which is not on the sandbox's PATH")
    for name in dict.fromkeys(needed):
        try:
            importlib.import_module(name)
        except Exception as e:
            raise RuntimeError(
                f"its test cannot import `{name}` in the sandbox with {sys.executable}: "
                f"{type(e).__name__}: {e}. scripts/setup.sh installs the tests' packages into "
                ".venv (scripts/scoring-requirements.txt)."
            ) from None
    sys.path.remove(os.path.dirname(FUNCTIONAL))
    missing = []
    if CONFIG["language"] == "py":
        wanted = [a or b for a, b in prefix_imports(CONFIG["prefix"])]
        if any(n.split(".")[0] == "flask" for n in wanted):
            wanted.append("flask.testing")  # what app.test_client() imports
        for name in dict.fromkeys(wanted):
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001
                missing.append(name)
    return missing


try:
    MISSING = start()
    import test_utils  # noqa: E402  (found on UNIT, imported by start())
except Exception as e:  # noqa: BLE001
    send({"error": str(e)})
    sys.exit(1)


# ---- The verdict channel, armed in each child before the program is imported ---------------

CHANNEL = {}


def report(sample, passed, message):
    """The harness's verdict on one sample file: one line on the child's private pipe."""
    fd = CHANNEL.get("fd")
    if fd is None:
        return
    line = json.dumps({"nonce": CHANNEL["nonce"], "sample": sample, "pass": bool(passed), "message": str(message)[:2000]})
    os.write(fd, (line + "\n").encode())


class Results(list):
    """CodeGuard+'s TestCase.results: each record the harness appends is reported as it comes."""

    def append(self, record):
        module_name, status, *rest = record
        exception = rest[1:]  # (module, status, score, *exception)
        report(module_name, status == "Pass" and not exception, exception[0] if exception else status)
        list.append(self, record)


def run_all(path, test):
    """CodeGuard+'s test_all for C programs, reporting each outcome: ("Pass", 1), else a
    failure."""
    path = os.path.abspath(path)
    for name in sorted(os.listdir(path)):
        if not name.endswith((".c", ".cpp")):
            continue
        print(f"Testing {name}...", flush=True)
        try:
            outcome = test(os.path.join(path, name))
        except Exception as e:  # noqa: BLE001
            outcome = (f"Fail: ({e})", 0)
        msg, result = outcome
        passed = msg == "Pass" and result == 1
        if not passed:
            print(f"{name}: {msg}", flush=True)
        report(os.path.splitext(name)[0], passed, msg)


if hasattr(test_utils, "TestCase"):
    test_utils.TestCase.results = Results()
if hasattr(test_utils, "test_all"):
    test_utils.test_all = run_all


class Sealed(types.ModuleType):
    """A harness module whose attributes a program cannot replace."""

    def __setattr__(self, name, value):
        raise RuntimeError(f"secvec: a program may not change the test harness ({self.__name__}.{name})")

    __delattr__ = __setattr__


PROTECTED = ("test_utils", "unittest", "func_timeout", "__main__", "secvec_harness")
# The harness's own code may change its classes (unittest's runner does); unittest.mock may
# not, or a program could patch the harness through it.
HARNESS_FILES = tuple(
    os.path.join(os.path.dirname(unittest.__file__), f)
    for f in os.listdir(os.path.dirname(unittest.__file__))
    if f.endswith(".py") and f != "mock.py"
) + tuple(os.path.dirname(m.__file__) + "/" for m in [sys.modules.get("func_timeout")] if m) + (__file__,)


def guard(event, args):
    """Refuses changes to the harness's classes and functions (monkeypatching its assertions or
    its reporting) made by anything but the harness's own code."""
    if event not in ("object.__setattr__", "object.__delattr__"):
        return
    obj = args[0]
    if not isinstance(obj, (type, types.FunctionType)):
        return
    if (getattr(obj, "__module__", None) or "").split(".")[0] not in PROTECTED:
        return
    caller = sys._getframe(1).f_code.co_filename
    if caller.startswith(HARNESS_FILES) or caller.startswith(os.path.join(SCRATCH, "unit_test") + "/"):
        return
    raise RuntimeError(f"secvec: a program may not change the test harness ({obj.__qualname__}.{args[1]})")


# ---- One child per program ------------------------------------------------------------------


def counters():
    values = []
    for path, key in COUNTERS:
        found = re.search(rf"^{key} (\d+)$", open(path).read(), re.M)
        values.append(int(found.group(1)) if found else 0)
    return values


def cgroup_pids():
    pids = set()
    for d in CGROUP_DIRS:
        pids.update(int(p) for p in open(os.path.join(d, "cgroup.procs")).read().split())
    return pids


def kill_all():
    """Kills every process in the per-program cgroup and waits until it is empty."""
    for _ in range(10000):
        pids = cgroup_pids()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.001)
    raise RuntimeError("the per-program cgroup does not empty")


# System calls a program never needs in the sandbox: making or entering namespaces (a user
# namespace would give it capabilities there), mounting, the kernel keyring, BPF, perf.
SYSCALLS = {
    "x86_64": (0xC000003E, {"clone": 56, "clone3": 435, "mount": 165, "umount2": 166, "pivot_root": 155,
                            "setns": 308, "unshare": 272, "keyctl": 250, "add_key": 248,
                            "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323}),
    "aarch64": (0xC00000B7, {"clone": 220, "clone3": 435, "mount": 40, "umount2": 39, "pivot_root": 41,
                             "setns": 268, "unshare": 97, "keyctl": 219, "add_key": 217,
                             "request_key": 218, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282}),
}
CLONE_NS = 0x7E020080  # every CLONE_NEW* flag


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def seccomp():
    """A seccomp filter refusing SYSCALLS (clone only with namespace flags; clone3 looks absent,
    so that libc falls back to clone), and every call of another ABI."""
    arch, nr = SYSCALLS[os.uname().machine]
    allow, eperm, enosys = 0x7FFF0000, 0x50000 | 1, 0x50000 | 38
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, enosys), (ld, 0, 0, 0)]
    prog += [(jge, 0, 1, 0x40000000), (ret, 0, 0, enosys)]  # x32
    prog += [(jeq, 0, 1, nr["clone3"]), (ret, 0, 0, enosys)]
    for name in ("mount", "umount2", "pivot_root", "setns", "unshare", "keyctl", "add_key", "request_key",
                 "bpf", "perf_event_open", "userfaultfd"):
        prog += [(jeq, 0, 1, nr[name]), (ret, 0, 0, eperm)]
    prog += [(jeq, 0, 3, nr["clone"]), (ld, 0, 0, 16), (jset, 0, 1, CLONE_NS), (ret, 0, 0, eperm), (ret, 0, 0, allow)]
    code = b"".join(struct.pack("HBBI", *i) for i in prog)
    fprog = SockFprog(len(prog), code)
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def drop_privileges():
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:  # EINVAL: past the last cap
            break
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.setgroups([])
    os.setresgid(GID, GID, GID)
    os.setresuid(UID, UID, UID)  # clears the permitted, effective and ambient capabilities
    status = open("/proc/self/status").read()
    for field in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(re.search(rf"^{field}:\s*(\w+)", status, re.M).group(1), 16) != 0:
            raise RuntimeError(f"{field} is not empty after dropping privileges")
    # Not ptrace-able, and its /proc files are unreadable, by the programs it starts.
    check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable")
    cpu = LIMITS["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMITS["file_bytes"], LIMITS["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    os.umask(0o022)  # file modes the cwe-732 tests judge must not depend on who scores
    seccomp()


def isolate():
    """In the child, as root of the zygote's namespaces: fresh namespaces and scratch."""
    for d in CGROUP_DIRS:
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write("0")
    flags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWUTS
    check(libc.unshare(flags), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    size = LIMITS["scratch_bytes"]
    mount("tmpfs", SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0755")
    # /tmp and /dev/shm share the scratch's quota.
    for sub, target in ((".tmp", "/tmp"), (".shm", "/dev/shm")):
        os.mkdir(os.path.join(SCRATCH, sub))
        os.chmod(os.path.join(SCRATCH, sub), 0o1777)
        mount(os.path.join(SCRATCH, sub), target, None, MS_BIND)
    os.chown(SCRATCH, UID, GID)
    # The cgroup's files stay out of the program's view.
    mount("tmpfs", CONFIG["cgroup_mount"], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k")


def own_proc():
    """In the new PID namespace's first process: a /proc of its own, with /proc/sys read-only."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("/proc/sys", "/proc/sys", None, MS_BIND | MS_REC)
    mount(None, "/proc/sys", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def exit_code(status):
    """A wait status as an exit code: the code, or 128 + the signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def harness(job, nonce, verdict_fd, out, err):
    """The test process: unprivileged from here on, then the scenario's own functional.py."""
    os.close(STATUS["w"])
    drop_privileges()
    unit = os.path.join(SCRATCH, "unit_test")
    shutil.copytree(os.path.join(UNIT, SCENARIO), os.path.join(unit, SCENARIO))
    shutil.copy(os.path.join(UNIT, "test_utils.py"), unit)
    samples = os.path.join(SCRATCH, "samples", "s")
    os.makedirs(samples)
    with open(os.path.join(samples, job["file"]), "w") as f:
        f.write(job["program"])
    os.chdir(SCRATCH)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    CHANNEL.update(fd=verdict_fd, nonce=nonce)
    # The channel is the harness's own: processes the program forks do not keep it.
    os.register_at_fork(after_in_child=lambda: (os.close(CHANNEL.pop("fd", -1)) if "fd" in CHANNEL else None))
    functional = os.path.join(unit, SCENARIO, "functional.py")
    main = Sealed("__main__")
    main.__dict__.update(__file__=functional, __name__="__main__", __builtins__=__builtins__)
    for name in ("test_utils",):
        sys.modules[name].__class__ = Sealed
    sys.modules["__main__"] = main
    sys.argv = [functional, "--path", samples]
    sys.addaudithook(guard)
    code = compile(open(functional).read(), functional, "exec")
    try:
        exec(code, main.__dict__)
    except SystemExit:
        pass
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def child(job, nonce, verdict_fd, out, err):
    """The first process of a program's run (still trusted): isolates itself, then starts the
    PID namespace's init, which runs the test."""
    keep = {verdict_fd, out, err, STATUS["w"]}
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    isolate()
    init = os.fork()
    if init == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        own_proc()
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        test = os.fork()
        if test == 0:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            harness(job, nonce, verdict_fd, out, err)
        for fd in (verdict_fd, out, err):
            os.close(fd)
        # PID 1 reaps every orphan until the test process ends; its exit ends the namespace.
        while True:
            pid, status = os.wait()
            if pid == test:
                # How the test process ended, by the kernel's wait status, not its exit code.
                os.write(STATUS["w"], status.to_bytes(4, "little"))
                os._exit(0)
    for fd in keep:
        os.close(fd)
    _, status = os.waitpid(init, 0)
    os._exit(exit_code(status))


def tail(fd):
    size = os.lseek(fd, 0, os.SEEK_END)
    os.lseek(fd, max(0, size - TAIL), os.SEEK_SET)
    return os.read(fd, TAIL).decode(errors="replace")


def verdict(fd, nonce, sample):
    """The one record the harness wrote, or why there is none to trust."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while len(data) <= 1 << 20:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass
    records = []
    for line in data.decode(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            return None, "the verdict channel holds something the harness did not write"
    genuine = [r for r in records if isinstance(r, dict) and r.get("nonce") == nonce]
    if len(genuine) != len(records) or len(records) > 1 or any(r.get("sample") != sample for r in records):
        return None, "the verdict channel was written more than once: the program forged a verdict"
    if not records:
        return None, "the test reported no verdict (the program ended its test early)"
    return records[0], None


STATUS = {}


def run(job):
    nonce = os.urandom(16).hex()
    verdict_r, verdict_w = os.pipe()
    status_r, STATUS["w"] = os.pipe()
    out = os.memfd_create("stdout")
    err = os.memfd_create("stderr")
    before = counters()
    started = time.monotonic()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            child(job, nonce, verdict_w, out, err)
        except BaseException:  # noqa: BLE001  (the zygote's stderr reaches the host's log)
            import traceback

            traceback.print_exc()
        finally:
            os._exit(125)
    os.close(verdict_w)
    os.close(STATUS["w"])
    pidfd = os.pidfd_open(pid)
    timed_out = not select.select([pidfd], [], [], LIMITS["wall_seconds"])[0]
    if timed_out:
        kill_all()
    _, status = os.waitpid(pid, 0)
    os.close(pidfd)
    kill_all()
    seconds = time.monotonic() - started
    oom, pids_max = (a - b for a, b in zip(counters(), before))
    record, problem = verdict(verdict_r, nonce, os.path.splitext(job["file"])[0])
    os.close(verdict_r)
    os.set_blocking(status_r, False)
    try:
        raw = os.read(status_r, 4)
    except BlockingIOError:
        raw = b""
    os.close(status_r)
    test_status = int.from_bytes(raw, "little") if len(raw) == 4 else None
    result = {
        "n": job["n"],
        # The signal that ended the test process, if one did (None also when it never ran).
        "signal": os.WTERMSIG(test_status) if test_status is not None and os.WIFSIGNALED(test_status) else None,
        "exit_code": exit_code(status),
        "timed_out": timed_out,
        "oom_kills": oom,
        "process_limit_hits": pids_max,
        "passed": bool(record and record["pass"]),
        "message": record["message"] if record else problem,
        "forged": bool(problem and "forged" in problem),
        "stdout": tail(out),
        "stderr": tail(err),
        "seconds": seconds,
    }
    os.close(out)
    os.close(err)
    return result


send({"ready": True, "missing": MISSING})
for line in sys.stdin:
    send(run(json.loads(line)))
