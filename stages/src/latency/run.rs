//! `latency`'s work: times greedy generation of a fixed number of new tokens.
//! Linked into `secvec-worker` alone (see `worker/src/lib.rs`).

use std::time::Instant;

use secvec_artifacts::results::Results;
use secvec_model::generate::{generate, Batching, Request, Sampling};
use secvec_model::load_for_inference;
use secvec_stage::StageContext;
use secvec_stages::latency::LatencyParams;
use serde_json::json;

use secvec_model::device::kind_of;

pub fn run(p: &LatencyParams, ctx: &StageContext) -> anyhow::Result<()> {
    let adapter = ctx.input("adapter").map(|a| a.path.as_path());
    let (model, tokenizer) = load_for_inference(
        &ctx.required("model")?.path,
        adapter,
        &p.device,
        kind_of(p.dtype),
        p.merge_adapter,
    )?;
    let ids = tokenizer.encode(&p.prompt)?;
    // Greedy, no stop: every run generates exactly `new_tokens`.
    let sampling = Sampling::greedy(p.new_tokens);
    let mut times = Vec::new();
    for run in 0..p.warmup + p.runs {
        ctx.check_cancelled()?;
        let t0 = Instant::now();
        generate(
            &model,
            &tokenizer,
            Request::new(&ids, 0),
            &sampling,
            Batching::rows(1),
            &[],
        )?;
        if run >= p.warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        ctx.progress(run as u64 + 1, (p.warmup + p.runs) as u64);
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let var = times.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (times.len().max(2) - 1) as f64;
    let variant = match (adapter.is_some(), p.merge_adapter) {
        (false, _) => "base",
        (true, true) => "adapter merged",
        (true, false) => "adapter unmerged",
    };
    Results::from_rows([json!({
        "variant": variant,
        "device": p.device,
        "dtype": p.dtype,
        "new_tokens": p.new_tokens,
        "runs": p.runs,
        "mean_ms": mean,
        "std_ms": var.sqrt(),
    })])
    .write(ctx)?;
    Ok(())
}
