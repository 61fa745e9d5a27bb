//! `secvec-worker`: runs the stages that need libtorch in their own process, for `secvec` (see
//! `secvec_stages::worker` for why and for the protocol).
//!
//!   secvec-worker run       one stage: a request on stdin, events on stdout
//!   secvec-worker serve J   `secvec serve` (J: a ServeRequest as JSON)
//!   secvec-worker devices   libtorch's version and CUDA devices, as JSON

mod diagnose;
mod generate;
mod http;
mod import_gguf;
mod init_model;
mod latency;
mod merge;
mod retrieve;
mod serve;
mod train;

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use secvec_model::device::load_cuda_backend;
use secvec_stage::Dtype;
use secvec_stage::ProgressSink;
use secvec_stage::{Stage, StageContext};
use secvec_stages::worker::{TorchInfo, WorkerEvent, WorkerRequest};

/// The libtorch kind of a manifest dtype.
pub(crate) fn kind_of(dtype: Dtype) -> tch::Kind {
    match dtype {
        Dtype::F32 => tch::Kind::Float,
        Dtype::Bf16 => tch::Kind::BFloat16,
        Dtype::F16 => tch::Kind::Half,
    }
}

/// Events as JSON lines on stdout, one writer at a time.
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

fn run_stage(request: WorkerRequest, events: Arc<Events>) -> anyhow::Result<()> {
    let ctx = StageContext::new(
        request.inputs,
        request.out,
        request.scratch,
        secvec_cache::Memo::new(request.memo),
        events,
        Arc::new(AtomicBool::new(false)),
    )
    .declaring(
        secvec_stages::registry()
            .get(&request.kind)
            .and_then(|k| k.result_fields(&request.params)),
    );
    let params = request.params;
    match request.kind.as_str() {
        secvec_stages::init_model::InitModel::KIND => init_model::run(&serde_json::from_value(params)?, &ctx),
        secvec_stages::generate::Generate::KIND => generate::run(&serde_json::from_value(params)?, &ctx),
        secvec_stages::latency::Latency::KIND => latency::run(&serde_json::from_value(params)?, &ctx),
        secvec_stages::train::Train::KIND => train::run(&serde_json::from_value(params)?, &ctx),
        secvec_stages::diagnose::Diagnose::KIND => diagnose::run(&serde_json::from_value(params)?, &ctx),
        secvec_stages::import_gguf::ImportGguf::KIND => import_gguf::run(&serde_json::from_value(params)?, &ctx),
        secvec_stages::merge::Merge::KIND => merge::run(&serde_json::from_value(params)?, &ctx),
        secvec_stages::retrieve::Retrieve::KIND => retrieve::run(&serde_json::from_value(params)?, &ctx),
        other => anyhow::bail!("secvec-worker does not run stages of kind `{other}`"),
    }
}

pub fn main() -> ExitCode {
    let events = Arc::new(Events(Mutex::new(std::io::stdout())));
    let result = match std::env::args().nth(1).as_deref() {
        Some("run") => (|| {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            run_stage(serde_json::from_str(&text)?, events.clone())
        })(),
        Some("serve") => {
            let request = std::env::args().nth(2).unwrap_or_default();
            return match serde_json::from_str(&request)
                .map_err(anyhow::Error::from)
                .and_then(serve::serve)
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("secvec serve: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
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
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("usage: secvec-worker run|serve JSON|devices (secvec starts it; see secvec_stages::worker)");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            events.send(&WorkerEvent::Error { text: format!("{e:#}") });
            ExitCode::FAILURE
        }
    }
}
