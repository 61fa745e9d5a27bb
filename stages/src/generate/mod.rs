//! `generate`: samples completions for every prompt of its input, with an optional LoRA
//! adapter merged into (or kept beside) the weights, or from an OpenAI-compatible server.

pub mod served;

use schemars::JsonSchema;
use secvec_artifacts::{adapter, model, pairs, prompts, results, samples};
use secvec_stage::{Dtype, InputSlot, ParamError, Resources, ResultFields, Stage, Upstreams, FILES};
use serde::{Deserialize, Serialize};

use crate::device;
use served::ServedBackend;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateParams {
    /// Where the samples come from: the `model` input, on this machine (left out), or
    /// `{http: {url, model, ...}, api: completions|chat}`, any OpenAI-compatible server (llama.cpp,
    /// vLLM, TGI, SGLang, OpenAI, DeepSeek). With a server, `device`, `dtype`, `batch_size` and
    /// `merge_adapter` do not apply, and the stage takes no `model` or `adapter` input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<ServedBackend>,
    /// Samples per prompt.
    #[serde(default = "one")]
    pub n: usize,
    /// 0 is greedy.
    #[serde(default = "d_temperature")]
    pub temperature: f64,
    #[serde(default = "d_top_p")]
    pub top_p: f64,
    #[serde(default = "d_max_new")]
    pub max_new_tokens: usize,
    /// The completion ends before the first of these strings.
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub seed: u64,
    /// Rows decoded together: samples of any prompts, joining as others finish (continuous
    /// batching). A speed setting: on the CPU the samples are the same whatever it is.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// MiB of KV cache the decoding rows may hold at once (each row's cache holds its prompt
    /// and `max_new_tokens`): fewer rows run while long prompts decode. Like `batch_size`, a
    /// speed setting on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_budget_mib: Option<u64>,
    #[serde(default = "d_device")]
    pub device: String,
    #[serde(default)]
    pub dtype: Dtype,
    /// The JSONL file (with `id` and `prompt` fields) inside the `prompts` input.
    #[serde(default = "d_prompts_file")]
    pub prompts_file: String,
    /// Only the first N prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// For scenario prompts: end each sample where the function its prefix opened ends, the
    /// point where scoring cuts the program (as CodeGuard+'s stop words do). The scored
    /// programs are the same; the tokens after them are never generated.
    #[serde(default)]
    pub stop_at_function_end: bool,
    /// Fold the adapter into the weights (no per-token overhead) rather than keeping it separate.
    #[serde(default = "yes")]
    pub merge_adapter: bool,
}

/// Sampling values the decoder can honour: a temperature of 0 (greedy) or more, and a top-p
/// above 0 and at most 1. Shared by `generate` and `secvec serve`.
pub fn check_sampling(temperature: f64, top_p: f64) -> Result<(), ParamError> {
    if !(temperature.is_finite() && temperature >= 0.0) {
        return Err(ParamError::new(
            "temperature",
            format!("{temperature} is not a temperature; give 0 (greedy) or more, e.g. 0.4"),
        ));
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ParamError::new(
            "top_p",
            format!("{top_p} is not a share of the probability mass; give more than 0 and at most 1, e.g. 0.95"),
        ));
    }
    Ok(())
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn d_temperature() -> f64 {
    0.4
}
fn d_top_p() -> f64 {
    0.95
}
fn d_max_new() -> usize {
    256
}
fn d_batch() -> usize {
    32
}
pub(crate) fn d_device() -> String {
    "cpu".into()
}
fn d_prompts_file() -> String {
    "prompts.jsonl".into()
}

pub(crate) fn model_slots() -> Vec<InputSlot> {
    vec![
        InputSlot {
            name: "model",
            accepts: &[model::TAG, FILES],
            many: false,
            optional: false,
            doc: "a Hugging Face model directory (config.json, *.safetensors, tokenizer.json)",
        },
        InputSlot {
            name: "adapter",
            accepts: &[adapter::TAG, FILES],
            many: false,
            optional: true,
            doc: "a PEFT LoRA adapter directory",
        },
    ]
}

pub struct Generate;

impl Stage for Generate {
    type Params = GenerateParams;
    const KIND: &'static str = "generate";
    // 2: results carry mean_prompt_tokens. 3: continuous batching; seed streams keyed by the
    // prompt's text, not its place in the file.
    const VERSION: u32 = 3;
    // Each sample has its own seeded stream and its logits do not depend on the rows beside it:
    // on the CPU, batching changes nothing but speed (on CUDA see `environment`).
    const SPEED_PARAMS: &'static [&'static str] = &["batch_size", "kv_budget_mib"];
    const DESCRIPTION: &'static str =
        "Samples n completions per prompt (temperature, top-p, stop sequences, seed) with a KV cache.";
    const LIBTORCH: bool = true;

    fn inputs() -> Vec<InputSlot> {
        let mut slots = model_slots();
        // A served backend samples from the server's model.
        slots[0].optional = true;
        slots[0].doc =
            "a Hugging Face model directory (config.json, *.safetensors, tokenizer.json); none with a served `backend`";
        slots.push(InputSlot {
            name: "prompts",
            accepts: &[prompts::TAG, pairs::TAG, FILES],
            many: false,
            optional: false,
            doc: "JSONL of {id, prompt} (see `prompts_file`)",
        });
        slots
    }

    fn output_tags() -> Vec<&'static str> {
        vec![samples::TAG, results::TAG]
    }

    fn result_fields(_: &Self::Params) -> Option<ResultFields> {
        Some(ResultFields::rows([
            "prompts",
            "samples",
            "mean_prompt_tokens",
            "mean_completion_tokens",
            "stop_rate",
        ]))
    }

    fn check(p: &GenerateParams, upstream: &Upstreams) -> Result<(), ParamError> {
        check_sampling(p.temperature, p.top_p)?;
        for (field, value) in [("n", p.n), ("batch_size", p.batch_size)] {
            if value == 0 {
                return Err(ParamError::new(field, "must be 1 or more"));
            }
        }
        let bound = |slot: &str| !upstream.slot(slot).is_empty();
        match &p.backend {
            None if !bound("model") => Err(ParamError::new(
                "backend",
                "local generation samples from the `model` input: bind `model` to a model stage or an HF model directory, or give `backend: {http: {url, model}}` to sample from a server",
            )),
            Some(_) if bound("model") || bound("adapter") => Err(ParamError::new(
                "backend",
                "a served backend samples from the server's model, so the stage takes no `model` or `adapter` input: remove them (in an overlay, `inputs: {model: null, adapter: null}`), or serve the adapter with the model",
            )),
            Some(b) if b.samples_per_request == 0 => {
                Err(ParamError::new("backend.samples_per_request", "must be 1 or more"))
            }
            _ => Ok(()),
        }
    }

    fn resources(p: &GenerateParams) -> Resources {
        match &p.backend {
            // The work is the server's; the stage waits on sockets.
            Some(_) => Resources::ONE_CPU,
            None => device::resources(&p.device),
        }
    }

    fn environment(p: &mut GenerateParams) -> anyhow::Result<serde_json::Value> {
        if let Some(b) = &p.backend {
            // The endpoint's URL and model are params; its key is checked, never keyed.
            b.http.resolve()?;
            return Ok(serde_json::Value::Null);
        }
        let mut env = device::settle(&mut p.device)?;
        // CUDA's matrix kernels change with the batch's shape, so there a sample depends on
        // the batch size and the budget, and the key says which.
        if p.device.starts_with("cuda") {
            env["batch_size"] = p.batch_size.into();
            env["kv_budget_mib"] = p.kv_budget_mib.into();
        }
        Ok(env)
    }
}
