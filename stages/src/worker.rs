//! Stages that need libtorch run in `secvec-worker`, a second binary beside `secvec`: the
//! engine never loads libtorch itself (so `run`, `plan` and `digest` start in milliseconds), a
//! libtorch abort fails one stage rather than the run, and cancelling kills the worker.
//!
//! The protocol: one [`WorkerRequest`] as JSON on the worker's stdin; one [`WorkerEvent`] per
//! line on its stdout; exit status 0 when the stage's outputs are written.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use secvec_stage::{InputArtifact, StageContext};
use serde::{Deserialize, Serialize};

/// Overrides where `secvec-worker` is found (default: beside the running executable).
pub const WORKER_ENV: &str = "SECVEC_WORKER";

/// What the worker runs: one stage, as the engine would run it in-process.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerRequest {
    pub kind: String,
    pub params: serde_json::Value,
    pub inputs: BTreeMap<String, Vec<InputArtifact>>,
    pub out: PathBuf,
    pub scratch: PathBuf,
    pub memo: PathBuf,
}

/// `secvec serve`'s arguments, as `secvec-worker serve JSON` takes them.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServeRequest {
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    pub device: String,
    pub dtype: secvec_stage::Dtype,
    /// The model name clients send and `/v1/models` lists (default: the folder's name).
    pub name: Option<String>,
    /// The most KV cache one request may need, MiB (more gets a 400; default: 4096).
    #[serde(default)]
    pub kv_budget_mib: Option<u64>,
}

/// One line of the worker's stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerEvent {
    Progress {
        done: u64,
        total: u64,
    },
    Message {
        text: String,
    },
    Notice {
        text: String,
    },
    /// The stage failed; the worker exits non-zero after this line.
    Error {
        text: String,
    },
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
    #[error("{0}")]
    Stage(String),
    #[error("secvec-worker died ({status}) without reporting an error; its last output: {stderr}")]
    Died { status: String, stderr: String },
    #[error("secvec-worker sent a line that is not an event: {0}")]
    Protocol(String),
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

/// Runs stage `kind` in a worker process, relaying its progress to `ctx`.
pub fn run_in_worker<P: Serialize>(kind: &str, params: &P, ctx: &StageContext) -> anyhow::Result<()> {
    let exe = worker_path()?;
    let request = WorkerRequest {
        kind: kind.to_string(),
        params: serde_json::to_value(params)?,
        inputs: ctx.all_inputs().clone(),
        out: ctx.out_dir().to_path_buf(),
        scratch: ctx.scratch_dir().to_path_buf(),
        memo: ctx.memo().dir().to_path_buf(),
    };
    let mut child = tied_command(&exe)
        .arg("run")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| WorkerError::Spawn(exe.clone(), e))?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(&serde_json::to_vec(&request)?)?;
    drop(stdin);
    let stderr = drain(child.stderr.take().expect("piped"));
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut failure = None;
    loop {
        if ctx.check_cancelled().is_err() {
            let _ = child.kill();
            let _ = child.wait();
            ctx.check_cancelled()?;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => match serde_json::from_str::<WorkerEvent>(&line) {
                Ok(WorkerEvent::Progress { done, total }) => ctx.progress(done, total),
                Ok(WorkerEvent::Message { text }) => ctx.message(&text),
                Ok(WorkerEvent::Notice { text }) => ctx.notice(&text),
                Ok(WorkerEvent::Error { text }) => failure = Some(WorkerError::Stage(text)),
                Err(_) => failure = Some(WorkerError::Protocol(line)),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait()?;
    let stderr = stderr.join().unwrap_or_default();
    if let Some(e) = failure {
        return Err(e.into());
    }
    if !status.success() {
        return Err(WorkerError::Died {
            status: status.to_string(),
            stderr: tail(&stderr, 2000),
        }
        .into());
    }
    Ok(())
}

/// libtorch's version and CUDA devices, asked of the worker (remembered while it is unchanged).
pub fn torch_info() -> Result<TorchInfo, String> {
    let exe = worker_path().map_err(|e| e.to_string())?;
    crate::toolchain::remembered("devices", &exe, |_| {
        let probe = |what: String| crate::toolchain::ToolError::Probe {
            path: exe.clone(),
            what,
        };
        let out = Command::new(&exe)
            .arg("devices")
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| probe(e.to_string()))?;
        if !out.status.success() {
            return Err(probe(format!(
                "{}: {}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 2000)
            )));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| probe(e.to_string()))
    })
    .map_err(|e| e.to_string())
}

fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    text[start..].to_string()
}
