"""secvec's scoring zygote: runs one scenario's functional test on many programs.

It starts inside bubblewrap as root of the sandbox's own mount, PID and network namespaces, and
runs only trusted code: it imports the test harness and its packages once, then forks one child
per program. Each child gets its own mount, PID, IPC, network (loopback only) and UTS namespaces,
a size-capped tmpfs for its scratch, /tmp and /dev/shm, through which what the sandbox bound
below them (an interpreter and its packages in /tmp) stays visible, and the per-program cgroup;
it then drops to an unprivileged uid with no capabilities, no_new_privs and the seccomp filter
the host built (seccomp.rs) before any of the program's code runs.

Protocol: argv[1] is the JSON configuration; each stdin line is a job {"file", "program"};
each stdout line is {"ready": true} or {"error": "..."} once, then one result per job.
The verdict reaches this process through a pipe, never through a file the program could write.
"""

import ast
import ctypes
import fcntl
import importlib
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import stat
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
#
# Lines on a pipe that only the test process holds, each starting with the run's nonce:
# "V <sample> <0|1> <message>" per verdict, "T <why>" when the harness was tampered with, and
# "END" once the test ran to its end (text fields in hex). Everything the writers use is bound
# now, before a program could replace what they would otherwise look up (os.write, builtins).

CHANNEL = {}


def _line(kind, *fields, _write=os.write, _get=dict.get, _join=" ".join, _encode=str.encode):
    fd = _get(CHANNEL, "fd")
    if fd is not None:
        _write(fd, _encode(_join((CHANNEL["nonce"], kind) + fields) + "\n"))


def _hex(text, _str=str, _encode=str.encode, _hexed=bytes.hex):
    return _hexed(_encode(_str(text)[:2000], errors="replace"))


# What a program must not replace: the functions and classes of test_utils and functional.py,
# unittest's assertions, and this file's reporting; taken as the program starts to run.
SNAPSHOT = {}
OWNERS = {}


def watch(name, owner, _vars=vars, _callable=callable, _isinstance=isinstance):
    OWNERS[name] = owner
    for attr, value in list(_vars(owner).items()):
        if attr == "results" or _callable(value) or _isinstance(value, (classmethod, staticmethod, property)):
            SNAPSHOT[(name, attr)] = value
            if _isinstance(value, type) and _isinstance(owner, types.ModuleType) and value.__module__ == owner.__name__:
                watch(f"{name}.{attr}", value)


def changes(_vars=vars, _join=", ".join):
    """What was replaced since the snapshot."""
    return _join(f"{n}.{a}" for (n, a), v in SNAPSHOT.items() if _vars(OWNERS[n]).get(a) is not v)


def report(sample, passed, message):
    """The harness's verdict on one sample file."""
    changed = changes()
    if changed:
        _line("T", _hex(f"the program replaced {changed}"))
    _line("V", _hex(sample), "1" if passed is True else "0", _hex(message))


class Results(list):
    """CodeGuard+'s TestCase.results: each record the harness appends is reported as it comes.
    Only the test's own code may append."""

    def append(self, record, _frame=sys._getframe, _list_append=list.append):
        caller = _frame(1).f_code.co_filename
        if caller != CHANNEL["functional"]:
            _line("T", _hex(f"a verdict was appended from {caller}"))
        else:
            module_name, status, *rest = record
            exception = rest[1:]  # (module, status, score, *exception)
            report(module_name, status == "Pass" and not exception, exception[0] if exception else status)
        _list_append(self, record)


def run_all(path, test):
    """CodeGuard+'s test_all for C programs, reporting each outcome: ("Pass", 1), else a
    failure."""
    path = os.path.abspath(path)
    for name in sorted(os.listdir(path)):
        if not name.endswith((".c", ".cpp")):
            continue
        print(f"Testing {name}...", flush=True)
        try:
            msg, result = test(os.path.join(path, name))
        except Exception as e:  # noqa: BLE001
            msg, result = f"Fail: ({e})", 0
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


def guard(event, args, _isinstance=isinstance, _getattr=getattr, _frame=sys._getframe):
    """Takes the snapshot when the program's code starts to run; then refuses to let anything
    but the harness's own code swap the code of the harness's functions."""
    if event == "exec" and not SNAPSHOT and _getattr(args[0], "co_filename", None) == CHANNEL["sample"]:
        watch("test_utils", sys.modules["test_utils"])
        watch("functional", sys.modules["__main__"])
        watch("unittest.TestCase", unittest.TestCase)
        watch("secvec.Results", Results)
        return
    if event not in ("object.__setattr__", "object.__delattr__") or not _isinstance(args[0], types.FunctionType):
        return
    if (_getattr(args[0], "__module__", None) or "").split(".")[0] not in PROTECTED:
        return
    if _frame(1).f_code.co_filename.startswith(HARNESS_FILES):
        return
    raise RuntimeError(f"secvec: a program may not change the test harness ({args[0].__qualname__}.{args[1]})")


PROTECTED = ("test_utils", "unittest", "func_timeout", "__main__")  # __main__: functional.py, this file
# The harness's own code (unittest's runner changes its classes); not unittest.mock, or a
# program could patch the harness through it.
HARNESS_FILES = tuple(
    os.path.join(os.path.dirname(unittest.__file__), f)
    for f in os.listdir(os.path.dirname(unittest.__file__))
    if f.endswith(".py") and f != "mock.py"
) + tuple(os.path.dirname(m.__file__) + "/" for m in [sys.modules.get("func_timeout")] if m) + (
    __file__,
    os.path.join(SCRATCH, "unit_test") + "/",
)


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


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


# The host's seccomp filter (seccomp.rs), an array of struct sock_filter.
FILTER = bytes.fromhex(CONFIG["seccomp"])
SECCOMP = SockFprog(len(FILTER) // 8, FILTER)


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
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(SECCOMP), 0, 0), "seccomp")


# Folders each program gets empty and private.
PRIVATE = (SCRATCH, "/tmp", "/dev/shm")


def bound_below(roots):
    """The outermost mount points below `roots`: what the sandbox bound there (an interpreter,
    its packages, a tool, when they live in /tmp), which a private folder must not hide."""
    points = set()
    for line in open("/proc/self/mountinfo"):
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split(" ")[4])
        if point.startswith(tuple(r + "/" for r in roots)):
            points.add(point)
    return sorted(p for p in points if not any(p.startswith(q + "/") for q in points))


BOUND = bound_below(PRIVATE)


def loopback_up():
    """Brings up the loopback interface of a new network namespace (SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", 0x1 | 0x40))  # IFF_UP | IFF_RUNNING


def isolate():
    """In the child, as root of the zygote's namespaces: fresh namespaces and scratch."""
    for d in CGROUP_DIRS:
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write("0")
    # A network of its own: no program sees another's sockets or meets its TIME_WAIT ports.
    flags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET
    check(libc.unshare(flags), "unshare")
    loopback_up()
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Held open (in this mount namespace), to be bound again once a private folder covers them.
    bound = [(p, os.open(p, os.O_PATH | os.O_CLOEXEC)) for p in BOUND]
    size = LIMITS["scratch_bytes"]
    mount("tmpfs", SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0755")
    # /tmp and /dev/shm share the scratch's quota.
    for sub, target in ((".tmp", "/tmp"), (".shm", "/dev/shm")):
        os.mkdir(os.path.join(SCRATCH, sub))
        os.chmod(os.path.join(SCRATCH, sub), 0o1777)
        mount(os.path.join(SCRATCH, sub), target, None, MS_BIND)
    os.umask(0o022)  # the unprivileged uid walks down to what is bound again
    for point, fd in bound:
        os.makedirs(os.path.dirname(point), mode=0o755, exist_ok=True)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.mkdir(point, 0o755)
        else:
            open(point, "x").close()
        mount(f"/proc/self/fd/{fd}", point, None, MS_BIND | MS_REC)
        mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    # The test folder, read-only (bound, not copied).
    unit = os.path.join(SCRATCH, "unit_test")
    os.makedirs(os.path.join(unit, SCENARIO))
    open(os.path.join(unit, "test_utils.py"), "w").close()
    for path in (SCENARIO, "test_utils.py"):
        mount(os.path.join(UNIT, path), os.path.join(unit, path), None, MS_BIND)
        mount(None, os.path.join(unit, path), None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chown(SCRATCH, UID, GID)
    # The cgroup's files stay out of the program's view.
    mount("tmpfs", CONFIG["cgroup_mount"], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k")


def own_proc():
    """In the new PID namespace's first process: a /proc of its own, with /proc/sys read-only."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("/proc/sys", "/proc/sys", None, MS_BIND | MS_REC)
    mount(None, "/proc/sys", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


# functional.py, compiled once under the name it has in each program's scratch.
FUNCTIONAL_CODE = compile(open(FUNCTIONAL).read(), os.path.join(SCRATCH, "unit_test", SCENARIO, "functional.py"), "exec")


def harness(job, nonce, verdict_fd, out, err):
    """The test process: unprivileged from here on, then the scenario's own functional.py."""
    CHANNEL.update(fd=verdict_fd, nonce=nonce)
    try:
        drop_privileges()
        samples = os.path.join(SCRATCH, "samples", "s")
        os.makedirs(samples)
        sample = os.path.join(samples, job["file"])
    except BaseException:  # noqa: BLE001  (the scorer's fault, not the program's: fail the stage)
        import traceback

        post(b"E", traceback.format_exc()[-2000:].encode())
        os._exit(125)
    try:
        with open(sample, "w") as f:
            f.write(job["program"])
    except OSError as e:  # the program's own size: only it fails
        post(b"P", f"the program does not fit in the sandbox's scratch: {e.strerror}".encode())
        os._exit(125)
    os.chdir(SCRATCH)
    # What reports on the sandbox is the harness's: the program never holds it.
    os.close(STATUS["w"])
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    functional = os.path.join(SCRATCH, "unit_test", SCENARIO, "functional.py")
    CHANNEL.update(functional=functional, sample=sample)
    # The channel is the harness's own: processes the program forks do not keep it.
    os.register_at_fork(after_in_child=lambda: (os.close(CHANNEL.pop("fd", -1)) if "fd" in CHANNEL else None))
    # A program's C process may signal the harness; an interrupt must not end a test early
    # with the verdict it had so far (CodeGuard+'s C tests `return status` in `finally`).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    main = Sealed("__main__")
    main.__dict__.update(__file__=functional, __name__="__main__", __builtins__=__builtins__)
    sys.modules["test_utils"].__class__ = Sealed
    sys.modules["__main__"] = main
    sys.argv = [functional, "--path", samples]
    sys.addaudithook(guard)
    try:
        exec(FUNCTIONAL_CODE, main.__dict__)
    except SystemExit:
        pass
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    changed = changes()
    if changed:
        _line("T", _hex(f"the program replaced {changed}"))
    _line("END")
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
            pid, status, usage = os.wait4(-1, 0)
            if pid == test:
                # How the test process ended, by the kernel's wait status, not its exit code,
                # and the CPU time it used (a SIGXCPU it did not earn is not a timeout).
                cpu = usage.ru_utime + usage.ru_stime
                post(b"S", struct.pack("<id", status, cpu))
                os._exit(0)
    for fd in keep:
        os.close(fd)
    os.waitpid(init, 0)
    os._exit(0)


def tail(fd):
    size = os.lseek(fd, 0, os.SEEK_END)
    os.lseek(fd, max(0, size - TAIL), os.SEEK_SET)
    return os.read(fd, TAIL).decode(errors="replace")


def read_all(fd, limit=1 << 20):
    os.set_blocking(fd, False)
    data = b""
    try:
        while len(data) <= limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass
    return data


def verdict(data, nonce, sample):
    """(passed, message, whether it is the test's verdict): what the harness said on the
    channel, or why it cannot be trusted."""
    verdicts, tampering, ended = [], [], False
    for line in data.decode(errors="replace").splitlines():
        fields = line.split(" ")
        try:
            if fields[0] != nonce:
                raise ValueError
            if fields[1:] == ["END"]:
                ended = True
            elif fields[1] == "V" and len(fields) == 5 and fields[3] in ("0", "1"):
                verdicts.append((bytes.fromhex(fields[2]).decode(), fields[3] == "1", bytes.fromhex(fields[4]).decode()))
            elif fields[1] == "T" and len(fields) == 3:
                tampering.append(bytes.fromhex(fields[2]).decode())
            else:
                raise ValueError
        except (ValueError, IndexError, UnicodeDecodeError):
            return False, "the verdict channel holds lines the harness did not write: the program forged a verdict", False
    if tampering:
        return False, f"the program tampered with its test: {'; '.join(dict.fromkeys(tampering))}", False
    if len(verdicts) > 1 or any(v[0] != sample for v in verdicts):
        return False, "the verdict channel holds more than the test's one verdict: the program forged a verdict", False
    if not verdicts:
        return False, "the test recorded no verdict (it stopped before judging the program, or the program ended it)", False
    if not ended:
        return False, f"the test did not run to its end (its verdict so far: {verdicts[0][2]})", False
    return verdicts[0][1], verdicts[0][2], True


STATUS = {}


def post(kind, payload):
    """One record on the status pipe, which only the scorer's processes hold: the test process's
    wait status and CPU time (S), a setup failure (E: the scorer's, the stage fails), or a
    program its sandbox cannot hold (P: only that program fails)."""
    os.write(STATUS["w"], kind + struct.pack("<I", len(payload)) + payload)


def records(raw):
    """The status pipe's records: {kind: payload}."""
    found = {}
    while len(raw) >= 5:
        (n,) = struct.unpack("<I", raw[1:5])
        found[raw[:1]] = raw[5 : 5 + n]
        raw = raw[5 + n :]
    return found


class SetupError(Exception):
    """A program's sandbox could not be set up: the scorer's fault, so the stage fails."""


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
        except BaseException:  # noqa: BLE001
            import traceback

            try:
                post(b"E", traceback.format_exc()[-2000:].encode())
            finally:
                os._exit(125)
        os._exit(125)
    os.close(verdict_w)
    os.close(STATUS["w"])
    pidfd = os.pidfd_open(pid)
    timed_out = not select.select([pidfd], [], [], LIMITS["wall_seconds"])[0]
    if timed_out:
        kill_all()
    os.waitpid(pid, 0)
    os.close(pidfd)
    kill_all()
    seconds = time.monotonic() - started
    oom, pids_max = (a - b for a, b in zip(counters(), before))
    found = records(read_all(status_r, 8192))
    os.close(status_r)
    if b"E" in found:
        raise SetupError(found[b"E"].decode(errors="replace"))
    test_status, cpu = struct.unpack("<id", found[b"S"]) if len(found.get(b"S", b"")) == 12 else (None, 0.0)
    if b"P" in found:
        passed, message, trusted = False, found[b"P"].decode(errors="replace"), False
    else:
        passed, message, trusted = verdict(read_all(verdict_r), nonce, os.path.splitext(job["file"])[0])
    os.close(verdict_r)
    signaled = test_status is not None and os.WIFSIGNALED(test_status)
    result = {
        # The signal that ended the test process, if one did, and the CPU time it had used.
        "signal": os.WTERMSIG(test_status) if signaled else None,
        "cpu_seconds": cpu,
        "timed_out": timed_out,
        "oom_kills": oom,
        "process_limit_hits": pids_max,
        "passed": passed,
        "message": message,
        # Whether the message is the test's own (else: why there is no verdict to trust).
        "verdict": trusted,
        "stdout": tail(out),
        "stderr": tail(err),
        "seconds": seconds,
    }
    os.close(out)
    os.close(err)
    return result


send({"ready": True, "missing": MISSING})
for line in sys.stdin:
    try:
        send(run(json.loads(line)))
    except SetupError as e:
        send({"error": f"a program's sandbox could not be set up:\n{e}"})
        sys.exit(1)
