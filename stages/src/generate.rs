//! `generate`: samples completions for every prompt of its input, with an optional LoRA
//! adapter merged into (or kept beside) the weights.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use secvec_engine::{InputSlot, Resources, Stage, StageContext, FILES};
use serde::{Deserialize, Serialize};

use crate::device::{self, Dtype};
use crate::worker::run_in_worker;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateParams {
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
    /// Samples decoded together.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
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
    /// Fold the adapter into the weights (no per-token overhead) rather than keeping it separate.
    #[serde(default = "yes")]
    pub merge_adapter: bool,
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

#[derive(Debug, thiserror::Error)]
pub enum GenerateStageError {
    #[error("{path}:{line}: {what}")]
    BadPrompt { path: PathBuf, line: usize, what: String },
    #[error("no prompts in {0}")]
    NoPrompts(PathBuf),
    #[error("{path}:{line}: prompt id {id} is also the id on line {first}; every prompt needs its own id")]
    DuplicateId {
        path: PathBuf,
        line: usize,
        first: usize,
        id: String,
    },
}

#[derive(Deserialize)]
struct PromptRecord {
    id: serde_json::Value,
    prompt: String,
}

/// `(id, prompt)` pairs from a JSONL file, or from `file` inside a directory.
pub fn read_prompts(input: &Path, file: &str) -> anyhow::Result<Vec<(serde_json::Value, String)>> {
    let path = crate::input_file::input_file(input, file)?;
    let text =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading prompts {}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: PromptRecord = serde_json::from_str(line).map_err(|e| GenerateStageError::BadPrompt {
            path: path.clone(),
            line: i + 1,
            what: e.to_string(),
        })?;
        // Samples are keyed by the id's text downstream (`score` reads 1 and "1" alike): two
        // prompts with one id would mix.
        let key = r.id.as_str().map(String::from).unwrap_or_else(|| r.id.to_string());
        if let Some(&first) = seen.get(&key) {
            return Err(GenerateStageError::DuplicateId {
                path: path.clone(),
                line: i + 1,
                first,
                id: r.id.to_string(),
            }
            .into());
        }
        seen.insert(key, i + 1);
        out.push((r.id, r.prompt));
    }
    if out.is_empty() {
        return Err(GenerateStageError::NoPrompts(path).into());
    }
    Ok(out)
}

pub(crate) fn model_slots() -> Vec<InputSlot> {
    vec![
        InputSlot {
            name: "model",
            accepts: &["model", FILES],
            many: false,
            optional: false,
            doc: "a Hugging Face model directory (config.json, *.safetensors, tokenizer.json)",
        },
        InputSlot {
            name: "adapter",
            accepts: &["adapter", FILES],
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
    const VERSION: u32 = 1;
    // Each sample has its own seeded stream: batching changes nothing but speed.
    const SPEED_PARAMS: &'static [&'static str] = &["batch_size"];
    const DESCRIPTION: &'static str =
        "Samples n completions per prompt (temperature, top-p, stop sequences, seed) with a KV cache.";

    fn inputs() -> Vec<InputSlot> {
        let mut slots = model_slots();
        slots.push(InputSlot {
            name: "prompts",
            accepts: &["prompts", "pairs", FILES],
            many: false,
            optional: false,
            doc: "JSONL of {id, prompt} (see `prompts_file`)",
        });
        slots
    }

    fn output_tags() -> Vec<&'static str> {
        vec!["samples", "results"]
    }

    fn resources(p: &GenerateParams) -> Resources {
        device::resources(&p.device)
    }

    fn environment(p: &mut GenerateParams) -> anyhow::Result<serde_json::Value> {
        Ok(device::settle(&mut p.device)?)
    }

    fn run(&self, p: &GenerateParams, ctx: &StageContext) -> anyhow::Result<()> {
        run_in_worker(Self::KIND, p, ctx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn duplicate_prompt_ids_name_the_file_and_both_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prompts.jsonl");
        std::fs::write(&file, "{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"b\", \"prompt\": \"y\"}\n\n{\"id\": \"a\", \"prompt\": \"z\"}\n").unwrap();
        let err = super::read_prompts(&file, "prompts.jsonl").unwrap_err().to_string();
        assert!(
            err.ends_with("prompts.jsonl:4: prompt id \"a\" is also the id on line 1; every prompt needs its own id"),
            "{err}"
        );
        // `score` reads the ids 1 and "1" alike.
        std::fs::write(
            &file,
            "{\"id\": 1, \"prompt\": \"x\"}\n{\"id\": \"1\", \"prompt\": \"y\"}\n",
        )
        .unwrap();
        let err = super::read_prompts(&file, "prompts.jsonl").unwrap_err().to_string();
        assert!(err.contains(":2: prompt id \"1\" is also the id on line 1"), "{err}");
    }
}
