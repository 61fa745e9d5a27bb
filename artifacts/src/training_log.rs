//! The training log of a `train` output (`training_log.jsonl`): one line per optimiser step.

use std::path::Path;

use secvec_stage::StageContext;
use serde::{Deserialize, Serialize};

use crate::{jsonl, ArtifactError};

pub const FILE: &str = "training_log.jsonl";

/// What one optimiser step did. No wall-clock time: it is written into the stage's output,
/// which must not change when a deterministic stage reruns (the stage's time is in provenance).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
    pub learning_rate: f64,
    /// Before clipping.
    pub grad_norm: f64,
    pub tokens: usize,
    /// LPO's mean score margin on the held-out pairs after this step, where measured
    /// (`train`'s `eval_every`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_margin: Option<f64>,
}

/// The log inside a `train` output directory.
pub fn read(dir: &Path) -> Result<Vec<StepLog>, ArtifactError> {
    Ok(jsonl::read(&dir.join(FILE))?.into_iter().map(|(_, s)| s).collect())
}

pub fn write(ctx: &StageContext, steps: &[StepLog]) -> Result<(), ArtifactError> {
    jsonl::write(ctx, FILE, steps)
}
