//! `kb-examples`: Rescue's knowledge-base examples, one vulnerability fix each with both
//! versions sliced around the fix and the APIs each calls (`examples.jsonl`).

use std::path::Path;

use secvec_stage::StageContext;
use serde::{Deserialize, Serialize};

use crate::language::Language;
use crate::{jsonl, ArtifactError};

pub const TAG: &str = "kb-examples";
pub const FILE: &str = "examples.jsonl";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// `<file>:<line>` of the record in the input data.
    pub id: String,
    /// Lowercase, e.g. `cwe-022`.
    pub cwe: String,
    pub language: Language,
    pub func_name: String,
    /// The whole function before and after the fix.
    pub before: String,
    pub after: String,
    /// The slices (Rescue §2.1.2) and the lines they keep (1-based).
    pub vulnerable: String,
    pub secure: String,
    pub vulnerable_lines: Vec<usize>,
    pub secure_lines: Vec<usize>,
    /// The APIs the secure slice calls, and the whole secure function.
    pub apis_sliced: Vec<String>,
    pub apis_original: Vec<String>,
    /// ERROR and MISSING nodes in the two parses (0: everything parsed).
    pub parse_errors: usize,
}

pub fn read(dir: &Path) -> Result<Vec<Example>, ArtifactError> {
    Ok(jsonl::read(&dir.join(FILE))?.into_iter().map(|(_, e)| e).collect())
}

pub fn write(ctx: &StageContext, examples: &[Example]) -> Result<(), ArtifactError> {
    jsonl::write(ctx, FILE, examples)
}

pub const SUMMARIES_TAG: &str = "kb-summaries";
pub const SUMMARIES_FILE: &str = "summaries.jsonl";

/// One cluster's summaries (Rescue §2.1.1): what to do and why the vulnerability arises.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub language: Language,
    pub cwe: String,
    /// Security guidelines: actionable rules.
    pub guideline: String,
    /// Vulnerability causes: the conditions that make code vulnerable.
    pub cause: String,
    /// The ids of the examples summarised.
    pub examples: Vec<String>,
    /// Rounds of summarising until one summary was left.
    pub levels: usize,
}

pub fn read_summaries(dir: &Path) -> Result<Vec<Summary>, ArtifactError> {
    Ok(jsonl::read(&dir.join(SUMMARIES_FILE))?
        .into_iter()
        .map(|(_, s)| s)
        .collect())
}

pub fn write_summaries(ctx: &StageContext, summaries: &[Summary]) -> Result<(), ArtifactError> {
    jsonl::write(ctx, SUMMARIES_FILE, summaries)
}

pub const RETRIEVED_TAG: &str = "kb-retrieved";
pub const RETRIEVED_FILE: &str = "retrieved.jsonl";

/// What `retrieve` found for one task (Rescue §2.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    /// The task's prompt id.
    pub id: String,
    /// The task's vulnerability-cause analysis by the LLM (empty when not asked).
    pub cause: String,
    /// The API calls of the task's draft.
    pub apis: Vec<String>,
    /// Step 1's CWEs, best first.
    pub cwes: Vec<RetrievedCwe>,
    /// Step 2's example, when one cleared a threshold.
    pub example: Option<RetrievedExample>,
}

/// A candidate's fused score and its score per facet (absent: the facet took no part).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub fused: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrievedCwe {
    pub language: Language,
    pub cwe: String,
    #[serde(flatten)]
    pub scores: Scores,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrievedExample {
    /// The example's id in `examples.jsonl`.
    pub id: String,
    pub language: Language,
    pub cwe: String,
    #[serde(flatten)]
    pub scores: Scores,
    /// Its CWE's security guideline, when the knowledge base has summaries.
    pub guideline: Option<String>,
    /// Its secure code, sliced and whole.
    pub secure_sliced: String,
    pub secure_original: String,
}

pub fn read_retrieved(dir: &Path) -> Result<Vec<Retrieval>, ArtifactError> {
    Ok(jsonl::read(&dir.join(RETRIEVED_FILE))?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

pub fn write_retrieved(ctx: &StageContext, retrieved: &[Retrieval]) -> Result<(), ArtifactError> {
    jsonl::write(ctx, RETRIEVED_FILE, retrieved)
}
