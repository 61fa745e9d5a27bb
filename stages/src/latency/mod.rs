//! `latency`: time to generate a fixed number of new tokens, mean and spread over several runs
//! (SecVecCoder Table VI), for a base model or one with a LoRA adapter merged or kept separate.

use schemars::JsonSchema;
use secvec_stage::{Dtype, InputSlot, Resources, ResultFields, Stage};
use serde::{Deserialize, Serialize};

use crate::device;
use crate::generate::{d_device, model_slots};

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
    const LIBTORCH: bool = true;

    fn inputs() -> Vec<InputSlot> {
        model_slots()
    }

    fn output_tags() -> Vec<&'static str> {
        vec!["results"]
    }

    fn result_fields(_: &Self::Params) -> Option<ResultFields> {
        Some(ResultFields::rows([
            "variant",
            "device",
            "dtype",
            "new_tokens",
            "runs",
            "mean_ms",
            "std_ms",
        ]))
    }

    fn resources(p: &LatencyParams) -> Resources {
        device::resources(&p.device)
    }

    fn environment(p: &mut LatencyParams) -> anyhow::Result<serde_json::Value> {
        Ok(device::settle(&mut p.device)?)
    }
}
