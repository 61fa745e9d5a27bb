//! `init-model`: a tiny randomly initialised model of a given architecture in Hugging Face's
//! format, with a byte-level BPE tokenizer trained on the stage's input text — deterministic
//! from the seed. What the quickstart and the tests run.

use schemars::JsonSchema;
use secvec_artifacts::{model, pairs};
use secvec_stage::{InputSlot, Stage, FILES};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InitArch {
    Llama,
    Qwen2,
    Starcoder2,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitModelParams {
    pub arch: InitArch,
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: i64,
    #[serde(default = "d_inter")]
    pub intermediate_size: i64,
    #[serde(default = "d_layers")]
    pub num_layers: usize,
    #[serde(default = "d_heads")]
    pub num_heads: i64,
    #[serde(default = "d_kv")]
    pub num_kv_heads: i64,
    #[serde(default = "d_pos")]
    pub max_position_embeddings: i64,
    /// Standard deviation of the random weights.
    #[serde(default = "d_std")]
    pub initializer_range: f64,
    /// JSONL fields whose text trains the tokenizer (plain-text files are used whole).
    #[serde(default = "d_fields")]
    pub text_fields: Vec<String>,
    #[serde(default)]
    pub seed: u64,
}

fn d_vocab() -> usize {
    512
}
fn d_hidden() -> i64 {
    64
}
fn d_inter() -> i64 {
    128
}
fn d_layers() -> usize {
    2
}
fn d_heads() -> i64 {
    4
}
fn d_kv() -> i64 {
    2
}
fn d_pos() -> i64 {
    2048
}
fn d_std() -> f64 {
    0.02
}
fn d_fields() -> Vec<String> {
    ["prompt", "secure", "vulnerable"].map(String::from).to_vec()
}

#[derive(Debug, thiserror::Error)]
pub enum InitModelError {
    #[error("no text to train the tokenizer on in {0} (give JSONL with {1:?} fields, or .txt files)")]
    NoText(String, Vec<String>),
    #[error("{path}:{line}: not JSON: {what}")]
    BadLine { path: String, line: usize, what: String },
    #[error("hidden_size {hidden} must be a multiple of num_heads {heads}, and num_heads of num_kv_heads {kv}")]
    Shape { hidden: i64, heads: i64, kv: i64 },
}

pub struct InitModel;

impl Stage for InitModel {
    type Params = InitModelParams;
    const KIND: &'static str = "init-model";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str =
        "A tiny random model (llama, qwen2 or starcoder2) in HF format with a BPE tokenizer trained on the input text.";
    const LIBTORCH: bool = true;

    fn inputs() -> Vec<InputSlot> {
        vec![InputSlot {
            name: "text",
            accepts: &[pairs::TAG, FILES],
            many: true,
            optional: false,
            doc: "JSONL (e.g. a `pair` stage's output) or .txt files to train the tokenizer on",
        }]
    }

    fn output_tags() -> Vec<&'static str> {
        vec![model::TAG]
    }
}
