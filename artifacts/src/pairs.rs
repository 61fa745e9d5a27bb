//! `pairs`: training triples (prompt, secure, vulnerable completion) with the byte spans where
//! the two completions differ, one JSONL file per split (`train.jsonl`, `val.jsonl`).

use std::path::Path;

use secvec_stage::StageContext;
use serde::{Deserialize, Serialize};

use crate::language::Language;
use crate::{jsonl, ArtifactError};

pub const TAG: &str = "pairs";

/// One training triple. Spans are `[start, end)` byte ranges into `secure` / `vulnerable`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub id: String,
    pub split: String,
    pub cwe: String,
    pub language: Language,
    pub func_name: String,
    pub instruction: String,
    /// The rendered template; a completion follows it directly.
    pub prompt: String,
    pub secure: String,
    pub vulnerable: String,
    pub secure_spans: Vec<[usize; 2]>,
    pub vulnerable_spans: Vec<[usize; 2]>,
}

/// The file of a split inside a `pairs` output.
pub fn split_file(split: &str) -> String {
    format!("{split}.jsonl")
}

/// The pairs of one split file, in file order.
pub fn read(path: &Path) -> Result<Vec<Pair>, ArtifactError> {
    Ok(jsonl::read(path)?.into_iter().map(|(_, p)| p).collect())
}

pub fn write(ctx: &StageContext, split: &str, pairs: &[Pair]) -> Result<(), ArtifactError> {
    jsonl::write(ctx, &split_file(split), pairs)
}
