//! `secvec serve`: a model as an OpenAI-compatible endpoint.

use crate::exit::Exit;
use anyhow::Context;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// An HF model directory (config.json, safetensors, tokenizer.json).
    pub model: PathBuf,
    /// A PEFT LoRA adapter (or a `merge` output) applied to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port; the address is printed once the model is loaded.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// `f32`, `bf16` or `f16`.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// The model name clients send (default: the model folder's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The KV cache all requests' samples may hold at once, in MiB (a sample's cache is
    /// prompt + max_tokens long); samples wait for room, and a request one of whose samples
    /// could never fit gets a 400.
    #[arg(long, default_value_t = 4096)]
    pub kv_budget_mib: u64,
    /// Samples, of any concurrent requests, decoded together.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
}

pub fn run(args: ServeArgs) -> Result<Exit> {
    let dtype = serde_json::from_value(serde_json::Value::String(args.dtype.clone()))
        .with_context(|| format!("--dtype {}: use f32, bf16 or f16", args.dtype))?;
    let request = secvec_stage::worker::ServeRequest {
        model: args.model,
        adapter: args.adapter,
        host: args.host,
        port: args.port,
        device: args.device,
        dtype,
        name: args.name,
        kv_budget_mib: Some(args.kv_budget_mib),
        batch_size: Some(args.batch_size),
    };
    let worker = secvec_stage::worker::worker_path()?;
    // The worker takes this process's place, so signals and the exit status are its own.
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&worker)
        .arg("serve")
        .arg(serde_json::to_string(&request)?)
        .exec();
    Err(anyhow::anyhow!("starting {}: {err}", worker.display()))
}
