//! Instruction-tuning data (SafeCoder's `lmsys.jsonl` and Alpaca-style files): one JSON line
//! per example, `{instruction, input?, output}`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{jsonl, ArtifactError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instruction {
    pub instruction: String,
    /// Context for the instruction; often empty.
    #[serde(default)]
    pub input: String,
    pub output: String,
}

impl Instruction {
    /// The instruction with its input below it, as SafeCoder's template receives them.
    pub fn text(&self) -> String {
        match self.input.is_empty() {
            true => self.instruction.clone(),
            false => format!("{}\n\n{}", self.instruction, self.input),
        }
    }
}

pub fn read(path: &Path) -> Result<Vec<Instruction>, ArtifactError> {
    Ok(jsonl::read(path)?.into_iter().map(|(_, i)| i).collect())
}
