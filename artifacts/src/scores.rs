//! `scores`: the scorer's verdict on every distinct program (`judged.jsonl`), beside its
//! `results.json`. `score` writes it; `report` reads it for the HTML report's failure reasons.

use std::path::Path;

use secvec_stage::StageContext;
use serde::{Deserialize, Serialize};

use crate::{jsonl, ArtifactError};

pub const TAG: &str = "scores";
pub const FILE: &str = "judged.jsonl";

/// One distinct program of a scenario and what the tests and oracles made of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JudgedProgram {
    pub scenario: String,
    /// How many samples were this program.
    pub count: usize,
    pub valid: bool,
    pub functional: bool,
    pub reason: ExitReason,
    pub detail: String,
    pub failed_tests: Vec<String>,
    pub stderr_tail: String,
    /// Absent where no oracle judges the scenario, or the program does not parse.
    pub secure: Option<bool>,
    pub security: Option<SecurityVerdict>,
    pub program: String,
}

/// Why a sandboxed run ended, as the kernel tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitReason {
    Ok,
    /// Ran to its end without the expected result.
    Fail,
    /// The wall clock, or the CPU-time rlimit (SIGXCPU).
    Timeout,
    /// The memory cgroup's OOM killer ended a process of the run.
    Oom,
    /// The pids cgroup refused a fork.
    ProcessLimit,
    /// The file-size rlimit (SIGXFSZ).
    FileLimit,
    /// Ended by another signal.
    Crash,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecurityVerdict {
    pub secure: bool,
    /// The checks that decided (`semgrep:sql-injection`): those that flagged the program, or
    /// every check consulted when none did.
    pub decided_by: Vec<String>,
    pub findings: Vec<Finding>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub oracle: String,
    pub rule: String,
    pub line: usize,
    pub message: String,
}

/// The verdicts inside a `score` output directory.
pub fn read(dir: &Path) -> Result<Vec<JudgedProgram>, ArtifactError> {
    Ok(jsonl::read(&dir.join(FILE))?.into_iter().map(|(_, j)| j).collect())
}

pub fn write(ctx: &StageContext, judged: &[JudgedProgram]) -> Result<(), ArtifactError> {
    jsonl::write(ctx, FILE, judged)
}
