//! `samples`: completions (or whole programs) for prompts, one JSON line each (`samples.jsonl`).

use std::path::Path;

use secvec_stage::StageContext;
use serde::{Deserialize, Serialize};

use crate::{jsonl, ArtifactError};

pub const TAG: &str = "samples";
pub const FILE: &str = "samples.jsonl";
/// Beside the samples of a server's: which server, and what it said about itself.
pub const SERVED_FILE: &str = "served.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The id of the prompt it answers (a number in a hand-written file is read as its text).
    #[serde(deserialize_with = "crate::prompts::id_text")]
    pub prompt_id: String,
    /// Its index among the prompt's samples.
    #[serde(default)]
    pub sample: usize,
    /// A completion of the prompt.
    #[serde(default)]
    pub text: String,
    /// A whole program, used as it is instead of prompt + text (e.g. a reference solution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// What the model generated, as token ids: the decoded text of a byte-level model can lose
    /// bytes, the ids do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Generation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Empty for a server's samples: a server sends text.
    pub token_ids: Vec<i64>,
    pub finish_reason: FinishReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// End-of-sequence token or a stop sequence.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

/// The server that generated a stage's samples (`served.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Served {
    /// The base URL, up to `/v1`.
    pub url: String,
    /// The model name the requests carried.
    pub model: String,
    /// `GET /v1/models`'s list; `None` when every answer came from the memo and the server
    /// was not asked.
    pub models: Option<serde_json::Value>,
    /// What the server said about itself (llama.cpp's `/props`, vLLM's `/version`).
    pub reported: Option<serde_json::Value>,
}

pub fn read(path: &Path) -> Result<Vec<Sample>, ArtifactError> {
    Ok(jsonl::read(path)?.into_iter().map(|(_, s)| s).collect())
}

pub fn write(ctx: &StageContext, samples: &[Sample]) -> Result<(), ArtifactError> {
    jsonl::write(ctx, FILE, samples)
}

pub fn write_served(ctx: &StageContext, served: &Served) -> Result<(), ArtifactError> {
    crate::json::write(ctx, SERVED_FILE, served)
}
