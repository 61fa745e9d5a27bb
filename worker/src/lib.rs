//! `secvec-worker`: runs the stage kinds that need libtorch in their own process, for `secvec`
//! (see `secvec_stage::worker` for why).
//!
//!   secvec-worker run-stage JOB [--result R] [--events]
//!                           one job, as `secvec run-stage` runs it (--events: progress as
//!                           JSON lines, for the local runner)
//!   secvec-worker serve J   `secvec serve` (J: a ServeRequest as JSON)
//!   secvec-worker devices   libtorch's version and CUDA devices, as JSON
//!
//! Each libtorch kind keeps its run beside its params, in `stages/src/<kind>/run.rs`; this crate
//! compiles those files, so that libtorch is linked into the worker alone (a cargo feature of
//! `secvec-stages` would be unified into `secvec` by any workspace build).

#[path = "../../stages/src/diagnose/run.rs"]
mod diagnose;
#[path = "../../stages/src/generate/run.rs"]
mod generate;
mod http;
#[path = "../../stages/src/import_gguf/run.rs"]
mod import_gguf;
#[path = "../../stages/src/init_model/run.rs"]
mod init_model;
#[path = "../../stages/src/latency/run.rs"]
mod latency;
#[path = "../../stages/src/margin/run.rs"]
mod margin;
#[path = "../../stages/src/merge/run.rs"]
mod merge;
#[path = "../../stages/src/retrieve/run.rs"]
mod retrieve;
mod serve;
#[path = "../../stages/src/train/run.rs"]
mod train;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use secvec_engine::job::{Job, JobResult};
use secvec_engine::progress::StageProgress;
use secvec_model::device::load_cuda_backend;
use secvec_stage::worker::{TorchInfo, WorkerEvent};
use secvec_stage::{ProgressSink, Registry};
use secvec_stages as kinds;

/// Every kind, with the libtorch kinds' runs linked in.
fn registry() -> Registry {
    kinds::registry()
        .bind::<kinds::init_model::InitModel>(init_model::run)
        .bind::<kinds::import_gguf::ImportGguf>(import_gguf::run)
        .bind::<kinds::generate::Generate>(generate::run)
        .bind::<kinds::latency::Latency>(latency::run)
        .bind::<kinds::margin::Margin>(margin::run)
        .bind::<kinds::train::Train>(train::run)
        .bind::<kinds::diagnose::Diagnose>(diagnose::run)
        .bind::<kinds::merge::Merge>(merge::run)
        .bind::<kinds::retrieve::Retrieve>(retrieve::run)
}

/// Progress as JSON lines on stdout, one writer at a time.
struct Events(Mutex<std::io::Stdout>);

impl Events {
    fn send(&self, event: &WorkerEvent) {
        let mut out = self.0.lock().expect("stdout lock");
        let _ = writeln!(out, "{}", serde_json::to_string(event).expect("events serialise"));
        let _ = out.flush();
    }
}

impl ProgressSink for Events {
    fn progress(&self, done: u64, total: u64) {
        self.send(&WorkerEvent::Progress { done, total });
    }
    fn message(&self, text: &str) {
        self.send(&WorkerEvent::Message { text: text.into() });
    }
    fn notice(&self, text: &str) {
        self.send(&WorkerEvent::Notice { text: text.into() });
    }
}

/// `run-stage`: the job's result (and the exit status) as `secvec run-stage` gives them. A
/// signal ends the process before the result is written, so the executor asks why it ended.
fn run_stage(args: &[String]) -> anyhow::Result<ExitCode> {
    let mut job = None;
    let mut result = None;
    let mut events = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--result" => result = args.next().map(PathBuf::from),
            "--events" => events = true,
            path if job.is_none() => job = Some(PathBuf::from(path)),
            other => anyhow::bail!("unexpected argument `{other}`"),
        }
    }
    let job = Job::read(&job.ok_or_else(|| anyhow::anyhow!("name the job description"))?)?;
    let started = Instant::now();
    let progress: Arc<dyn ProgressSink> = match events {
        true => Arc::new(Events(Mutex::new(std::io::stdout()))),
        false => Arc::new(StageProgress::logged(&job.stage)),
    };
    let outcome = job.execute(&registry(), progress, Arc::new(AtomicBool::new(false)));
    if let Some(path) = result {
        JobResult::of(&job, &outcome, started.elapsed().as_secs_f64()).write(&path)?;
    }
    Ok(match outcome {
        Ok(output) => {
            eprintln!("committed {} as {}", job.stage, output.short());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: stage {} failed: {e}", job.stage);
            ExitCode::FAILURE
        }
    })
}

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("run-stage") => run_stage(&args[1..]),
        Some("serve") => serde_json::from_str(args.get(1).map_or("", String::as_str))
            .map_err(anyhow::Error::from)
            .and_then(serve::serve)
            .map(|()| ExitCode::SUCCESS),
        Some("devices") => {
            load_cuda_backend();
            let info = TorchInfo {
                torch: env!("SECVEC_TORCH_VERSION").to_string(),
                cuda_devices: if tch::Cuda::is_available() {
                    tch::Cuda::device_count() as usize
                } else {
                    0
                },
            };
            println!("{}", serde_json::to_string(&info).expect("serialisable"));
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("usage: secvec-worker run-stage JOB [--result R] [--events] | serve JSON | devices");
            return ExitCode::from(2);
        }
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("secvec-worker {}: {e:#}", args[0]);
        ExitCode::from(2)
    })
}
