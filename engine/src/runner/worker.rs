//! Jobs of libtorch kinds, run by the local runner in `secvec-worker run-stage`: the same job
//! description a cluster node runs, committed by the worker, with its progress relayed here.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use secvec_cache::Digest;
use secvec_stage::worker::{drain, tied_command, worker_path, WorkerError, WorkerEvent};
use secvec_stage::ProgressSink;

use super::{tail, Failure, FailureKind};
use crate::job::{Job, JobResult};

/// Runs `job` in a worker process; cancelling kills it (nothing is committed then).
pub fn run(job: &Job, progress: Arc<dyn ProgressSink>, cancel: &AtomicBool) -> Result<Digest, Failure> {
    let failed = |message: String| Failure::new(FailureKind::Failed, message);
    let exe = worker_path().map_err(|e| failed(e.to_string()))?;
    let dir = tempfile::Builder::new()
        .prefix("secvec-job-")
        .tempdir()
        .map_err(|e| failed(format!("a folder for the job description: {e}")))?;
    let (spec, result) = (dir.path().join("job.json"), dir.path().join("result.json"));
    std::fs::File::create(&spec)
        .and_then(|mut f| f.write_all(&serde_json::to_vec(job).expect("jobs serialise")))
        .map_err(|e| failed(format!("writing {}: {e}", spec.display())))?;
    let mut child = tied_command(&exe)
        .arg("run-stage")
        .arg(&spec)
        .arg("--result")
        .arg(&result)
        .arg("--events")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(WorkerError::Spawn(exe.clone(), e).to_string()))?;
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
    let mut protocol = None;
    loop {
        if cancel.load(Ordering::Relaxed) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::new(FailureKind::Cancelled, "interrupted"));
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => match serde_json::from_str::<WorkerEvent>(&line) {
                Ok(WorkerEvent::Progress { done, total }) => progress.progress(done, total),
                Ok(WorkerEvent::Message { text }) => progress.message(&text),
                Ok(WorkerEvent::Notice { text }) => progress.notice(&text),
                Err(_) => protocol = Some(line),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child
        .wait()
        .map_err(|e| failed(format!("waiting for secvec-worker: {e}")))?;
    let log = stderr.join().unwrap_or_default();
    let with_log = |mut f: Failure| {
        f.log = Some(tail(&log, 40));
        f
    };
    if let Some(line) = protocol {
        return Err(with_log(failed(format!(
            "secvec-worker sent a line that is not an event: {line}"
        ))));
    }
    match JobResult::read(&result) {
        Ok(JobResult {
            output: Some(output), ..
        }) if status.success() => Ok(output),
        Ok(JobResult { error, .. }) => Err(failed(
            error.unwrap_or_else(|| format!("secvec-worker exited {status}")),
        )),
        Err(_) => Err(with_log(failed(format!(
            "secvec-worker died ({status}) without reporting a result"
        )))),
    }
}
