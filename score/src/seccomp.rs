//! The seccomp filter every piece of untrusted code runs under: generated programs (applied by
//! the zygote's test process), and the tools that read them (applied by bubblewrap). One
//! classic-BPF program, built here, so the two can never drift apart.
//!
//! It refuses what a program never needs in the sandbox and what namespaces do not cover:
//! making or entering namespaces (a user namespace would give it capabilities there), mounting,
//! the kernel keyring, BPF, perf, userfaultfd and io_uring (whose requests bypass this filter);
//! sockets of any family but unix, inet, inet6 and netlink (vsock reaches the host VM's vsock
//! space, which no network namespace covers); and every call of another ABI (x32, 32-bit).

/// `struct sock_filter`.
#[derive(Clone, Copy)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const LD_W_ABS: u16 = 0x20;
const JEQ: u16 = 0x15;
const JGE: u16 = 0x35;
const JSET: u16 = 0x45;
const RET: u16 = 0x06;

const ALLOW: u32 = 0x7fff_0000;
const fn errno(e: i32) -> u32 {
    0x0005_0000 | e as u32
}

/// `struct seccomp_data` offsets: the call's number, its ABI, and its first argument's low word.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0: u32 = 16;

/// Every CLONE_NEW* flag.
const CLONE_NS: u32 = 0x7e02_0080;

/// The socket families tests use: unix, inet, inet6 (loopback only: the network namespace has
/// nothing else), and netlink (route look-ups).
const FAMILIES: [u32; 4] = [1, 2, 10, 16];

/// System call numbers of one architecture.
struct Calls {
    audit_arch: u32,
    clone: u32,
    clone3: u32,
    socket: u32,
    socketpair: u32,
    refused: [u32; 21],
}

#[cfg(target_arch = "x86_64")]
const CALLS: Calls = Calls {
    audit_arch: 0xc000_003e,
    clone: 56,
    clone3: 435,
    socket: 41,
    socketpair: 53,
    // mount, umount2, pivot_root, setns, unshare, keyctl, add_key, request_key, bpf,
    // perf_event_open, userfaultfd, io_uring_setup, io_uring_enter, io_uring_register, and the
    // new mount API: open_tree, move_mount, fsopen, fsconfig, fsmount, fspick, mount_setattr
    refused: [
        165, 166, 155, 308, 272, 250, 248, 249, 321, 298, 323, 425, 426, 427, 428, 429, 430, 431, 432, 433, 442,
    ],
};

#[cfg(target_arch = "aarch64")]
const CALLS: Calls = Calls {
    audit_arch: 0xc000_00b7,
    clone: 220,
    clone3: 435,
    socket: 198,
    socketpair: 199,
    refused: [
        40, 39, 41, 268, 97, 219, 217, 218, 280, 241, 282, 425, 426, 427, 428, 429, 430, 431, 432, 433, 442,
    ],
};

fn stmt(code: u16, k: u32) -> Insn {
    Insn { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// The filter's instructions.
fn program() -> Vec<Insn> {
    let c = &CALLS;
    let mut p = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ, c.audit_arch, 1, 0),
        stmt(RET, errno(libc::ENOSYS)),
        stmt(LD_W_ABS, NR),
    ];
    #[cfg(target_arch = "x86_64")]
    p.extend([jump(JGE, 0x4000_0000, 0, 1), stmt(RET, errno(libc::ENOSYS))]); // x32
                                                                              // clone3 looks absent, so that libc falls back to clone, whose flags the filter can read.
    p.extend([jump(JEQ, c.clone3, 0, 1), stmt(RET, errno(libc::ENOSYS))]);
    for nr in c.refused {
        p.extend([jump(JEQ, nr, 0, 1), stmt(RET, errno(libc::EPERM))]);
    }
    p.extend([
        jump(JEQ, c.clone, 0, 4),
        stmt(LD_W_ABS, ARG0),
        jump(JSET, CLONE_NS, 0, 1),
        stmt(RET, errno(libc::EPERM)),
        stmt(RET, ALLOW),
    ]);
    // socket and socketpair: the family is the first argument.
    let families = FAMILIES.len() as u8;
    p.extend([
        jump(JEQ, c.socket, 1, 0),
        jump(JEQ, c.socketpair, 0, families + 2),
        stmt(LD_W_ABS, ARG0),
    ]);
    for (i, f) in FAMILIES.iter().enumerate() {
        p.push(jump(JEQ, *f, families - i as u8, 0));
    }
    p.extend([stmt(RET, errno(libc::EAFNOSUPPORT)), stmt(RET, ALLOW)]);
    p.push(stmt(RET, ALLOW));
    p
}

/// The filter as the kernel and bubblewrap's `--seccomp` read it: an array of
/// `struct sock_filter` in native byte order.
pub fn filter() -> Vec<u8> {
    program()
        .into_iter()
        .flat_map(|i| {
            let mut b = Vec::with_capacity(8);
            b.extend(i.code.to_ne_bytes());
            b.push(i.jt);
            b.push(i.jf);
            b.extend(i.k.to_ne_bytes());
            b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::sandbox::{tests::python, ExitReason, Limits, SCRATCH};

    /// Each refused call fails with the filter's errno for a tool in the sandbox, and the
    /// families tests need still work.
    #[test]
    fn tools_get_no_vsock_io_uring_or_namespaces_and_keep_their_sockets() {
        let Some((sandbox, py)) = python() else { return };
        let code = r#"
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def err(f):
    try:
        f(); return "ok"
    except OSError as e:
        return e.errno
def call(nr, *args):
    r = libc.syscall(nr, *args)
    return "ok" if r >= 0 else ctypes.get_errno()
io_uring_setup = 425
params = ctypes.create_string_buffer(120)
print(err(lambda: socket.socket(40, socket.SOCK_STREAM)),   # AF_VSOCK
      err(lambda: socket.socket(38, socket.SOCK_SEQPACKET)), # AF_ALG
      err(lambda: socket.socketpair(40)),
      call(io_uring_setup, 4, params),
      libc.unshare(0x10000000) and ctypes.get_errno(),  # CLONE_NEWUSER
      err(lambda: socket.socket(socket.AF_INET).close()),
      err(lambda: socket.socket(socket.AF_INET6).close()),
      err(lambda: socket.socket(socket.AF_UNIX).close()),
      err(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()),
      os.waitpid(os.fork() or os._exit(0), 0)[1])
"#;
        let limits = Limits::default();
        let out = sandbox.run(&[&py, "-c", code], &[], SCRATCH, None, &limits).unwrap();
        assert_eq!(out.reason, ExitReason::Ok, "{out:?}");
        let (af, perm) = (libc::EAFNOSUPPORT, libc::EPERM);
        assert_eq!(
            out.stdout_text().trim(),
            format!("{af} {af} {af} {perm} {perm} ok ok ok ok 0"),
            "{out:?}"
        );
    }
}
