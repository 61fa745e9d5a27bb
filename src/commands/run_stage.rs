//! `secvec run-stage`: runs one stage from its job description, as a cluster node does.

use super::interrupted;
use super::Globals;
use crate::exit::Exit;
use anyhow::Context;
use anyhow::Result;
use secvec_engine::job::{Job, JobResult};
use secvec_engine::progress::StageProgress;
use secvec_stage::worker::worker_path;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct RunStageArgs {
    /// A job description (`<cache>/jobs/<key>/attempt-N.json`).
    pub job: PathBuf,
    /// Where to write the result (atomically, as the job's last act).
    #[arg(long)]
    pub result: Option<PathBuf>,
}

/// One job, as a cluster node runs it. Its log gets the plain progress lines a local run prints.
pub fn run(args: RunStageArgs, globals: &Globals) -> Result<Exit> {
    let RunStageArgs { job: path, result } = args;
    let job = Job::read(&path)?;
    // A job this binary cannot run (unknown kind, other version) is reported in its result below.
    if job.kind_in(&globals.registry).is_ok_and(|kind| kind.libtorch()) {
        return exec_worker(&path, result.as_deref());
    }
    let started = std::time::Instant::now();
    let progress = Arc::new(StageProgress::logged(&job.stage));
    let cancel = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let flag = cancel.clone();
    runtime.spawn(async move {
        interrupted().await;
        flag.store(true, Ordering::Relaxed);
    });
    let outcome = job.execute(&globals.registry, progress, cancel.clone());
    // Stopped by the scheduler (cancelled, preempted, out of time): no result, so that the
    // executor asks the scheduler why the job ended.
    if cancel.load(Ordering::Relaxed) {
        eprintln!("stopped by a signal: nothing of stage {} was committed", job.stage);
        return Ok(Exit::Terminated);
    }
    if let Some(path) = result {
        JobResult::of(&job, &outcome, started.elapsed().as_secs_f64())
            .write(&path)
            .with_context(|| format!("writing the job's result to {}", path.display()))?;
    }
    match outcome {
        Ok(output) => {
            eprintln!("committed {} as {}", job.stage, output.short());
            Ok(Exit::Success)
        }
        Err(e) => {
            eprintln!("error: stage {} failed: {e}", job.stage);
            Ok(Exit::Failed)
        }
    }
}

/// A libtorch kind's job becomes `secvec-worker run-stage`, in this process's place, so that the
/// scheduler's signals and the exit status are the worker's.
fn exec_worker(job: &Path, result: Option<&Path>) -> Result<Exit> {
    use std::os::unix::process::CommandExt;
    let exe = worker_path()?;
    let mut command = std::process::Command::new(&exe);
    command.arg("run-stage").arg(job);
    if let Some(result) = result {
        command.arg("--result").arg(result);
    }
    Err(command.exec()).with_context(|| format!("starting {}", exe.display()))
}
