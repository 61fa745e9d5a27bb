//! The files stages pass to each other, one Rust type per output tag. Every writer and every
//! reader goes through these types, so a format is defined once, and a bad line is reported
//! the same way wherever it is read: the file, the line, and what is wrong.

pub mod adapter;
pub mod diagnostics;
pub mod instructions;
pub mod json;
pub mod jsonl;
pub mod kb;
pub mod language;
pub mod model;
pub mod pairs;
pub mod prompts;
pub mod results;
pub mod samples;
pub mod scenarios;
pub mod scores;
pub mod training_log;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {what}")]
    Line { path: PathBuf, line: usize, what: String },
    #[error("{path}: {what}")]
    File { path: PathBuf, what: String },
}
