//! `scenarios`: CodeGuard+ scenarios ready to score: their prompts (`prompts.jsonl`, each with
//! its [`Scenario`](crate::prompts::Scenario)), each scenario's files under `scenarios/<id>/`,
//! and its unit tests under `unit_test/<id>/` beside the shared `unit_test/test_utils.py`.

use std::path::{Path, PathBuf};

use crate::prompts::{self, Prompt, Scenario};
use crate::ArtifactError;

pub const TAG: &str = "scenarios";
pub const SCENARIO_DIR: &str = "scenarios";
pub const UNIT_TEST_DIR: &str = "unit_test";

/// The unit tests of scenario `id` inside a `scenarios` output.
pub fn unit_test_dir(root: &Path, id: &str) -> PathBuf {
    root.join(UNIT_TEST_DIR).join(id)
}

/// The scenarios of a `scenarios` output, each with its prompt id.
pub fn read(root: &Path) -> Result<Vec<(String, Scenario)>, ArtifactError> {
    let path = root.join(prompts::FILE);
    prompts::read(&path)?
        .into_iter()
        .map(|Prompt { id, scenario, .. }| match scenario {
            Some(s) => Ok((id, s)),
            None => Err(ArtifactError::File {
                path: path.clone(),
                what: format!("prompt {id:?} has no scenario fields (set, cwe, language, prefix, ...)"),
            }),
        })
        .collect()
}
