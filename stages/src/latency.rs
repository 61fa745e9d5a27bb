//! `latency`: time to generate a fixed number of new tokens, mean and spread over several runs
//! (SecVecCoder Table VI), for a base model or one with a LoRA adapter merged or kept separate.

use std::time::Instant;

use schemars::JsonSchema;
use secvec_engine::{InputSlot, Resources, Stage, StageContext};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::generate::{d_device, gpu_slots, model_slots};
use crate::model::device::Dtype;
use crate::model::generate::{generate, Sampling};
use crate::model::load_for_inference;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencyParams {
    #[serde(default = "d_new")]
    pub new_tokens: usize,
    #[serde(default = "d_runs")]
    pub runs: usize,
    /// Untimed runs first, to warm caches.
    #[serde(default = "d_warmup")]
    pub warmup: usize,
    #[serde(default = "d_prompt")]
    pub prompt: String,
    #[serde(default = "d_device")]
    pub device: String,
    #[serde(default)]
    pub dtype: Dtype,
    #[serde(default = "yes")]
    pub merge_adapter: bool,
}

fn d_new() -> usize {
    20
}
fn d_runs() -> usize {
    5
}
fn d_warmup() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn d_prompt() -> String {
    "def read_file(path):\n".into()
}

pub struct Latency;

impl Stage for Latency {
    type Params = LatencyParams;
    const KIND: &'static str = "latency";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str = "Mean and spread of the time to generate N new tokens (Table VI).";

    fn inputs() -> Vec<InputSlot> {
        model_slots()
    }

    fn output_tags() -> Vec<&'static str> {
        vec!["results"]
    }

    fn resources(p: &LatencyParams) -> Resources {
        gpu_slots(&p.device)
    }

    fn run(&self, p: &LatencyParams, ctx: &StageContext) -> anyhow::Result<()> {
        let adapter = ctx.input("adapter").map(|a| a.path.as_path());
        let (model, tokenizer) = load_for_inference(
            &ctx.input("model").expect("required").path,
            adapter,
            &p.device,
            p.dtype,
            p.merge_adapter,
        )?;
        let ids = tokenizer.encode(&p.prompt)?;
        // Greedy, no stop: every run generates exactly `new_tokens`.
        let sampling = Sampling {
            n: 1,
            temperature: 0.0,
            top_p: 1.0,
            max_new_tokens: p.new_tokens,
            stop: vec![],
            seed: 0,
            batch_size: 1,
        };
        let mut times = Vec::new();
        for run in 0..p.warmup + p.runs {
            ctx.check_cancelled()?;
            let t0 = Instant::now();
            generate(&model, &tokenizer, &ids, 0, &sampling, &[], &mut || {})?;
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
        let rows = json!({"rows": [{
            "variant": variant,
            "device": p.device,
            "dtype": p.dtype,
            "new_tokens": p.new_tokens,
            "runs": p.runs,
            "mean_ms": mean,
            "std_ms": var.sqrt(),
        }]});
        ctx.write("results.json", serde_json::to_vec_pretty(&rows)?)?;
        Ok(())
    }
}
