//! `secvec-worker`, the second binary beside `secvec` that runs the kinds needing libtorch
//! ([`crate::Stage::LIBTORCH`]): the engine never loads libtorch itself (so `run`, `plan` and
//! `digest` start in milliseconds), a libtorch abort fails one stage rather than the run, and
//! cancelling kills the worker.
//!
//! `secvec-worker run-stage JOB --events` runs the engine's job description exactly as
//! `secvec run-stage` does, with one [`WorkerEvent`] per line on stdout.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::Dtype;

/// Overrides where `secvec-worker` is found (default: beside the running executable).
pub const WORKER_ENV: &str = "SECVEC_WORKER";

/// One line of the worker's stdout while it runs a stage for a local run.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerEvent {
    Progress { done: u64, total: u64 },
    Message { text: String },
    Notice { text: String },
}

/// `secvec serve`'s arguments, as `secvec-worker serve JSON` takes them.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServeRequest {
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    pub device: String,
    pub dtype: Dtype,
    /// The model name clients send and `/v1/models` lists (default: the folder's name).
    pub name: Option<String>,
    /// The KV cache all requests' samples may hold at once, MiB (default: 4096); a request one
    /// of whose samples could not fit gets a 400.
    #[serde(default)]
    pub kv_budget_mib: Option<u64>,
    /// Samples, of any requests, decoded together (default: 64).
    #[serde(default)]
    pub batch_size: Option<usize>,
}

/// What libtorch on this machine offers, as `secvec-worker devices` prints it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TorchInfo {
    /// The libtorch version the worker was built against.
    pub torch: String,
    /// How many CUDA devices libtorch can use.
    pub cuda_devices: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot find {0}: build secvec with `cargo build --release` ({WORKER_ENV} may name the worker)")]
    Missing(PathBuf),
    #[error("starting {0}: {1}")]
    Spawn(PathBuf, std::io::Error),
}

/// The worker binary: `$SECVEC_WORKER`, else `secvec-worker` beside the running executable.
pub fn worker_path() -> Result<PathBuf, WorkerError> {
    if let Some(p) = std::env::var_os(WORKER_ENV) {
        return Ok(PathBuf::from(p));
    }
    sibling_binary("secvec-worker")
}

/// One of secvec's binaries beside the running executable (or beside its folder, for test
/// binaries under `target/*/deps`).
pub fn sibling_binary(name: &str) -> Result<PathBuf, WorkerError> {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    [dir.join(name), dir.join("..").join(name)]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| WorkerError::Missing(dir.join(name)))
}

/// A command for `exe` that dies with this process, even by kill -9, so no orphan keeps
/// computing (or writing a checkpoint, or serving) for a run that is gone.
pub fn tied_command(exe: &Path) -> Command {
    let mut command = Command::new(exe);
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
}

/// Reads a child's pipe to its end on a thread of its own, so the child never blocks on a
/// full pipe; the thread returns the text.
pub fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The last `max` bytes of `text` (cut at a character boundary), for error messages.
pub fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    text[start..].to_string()
}
