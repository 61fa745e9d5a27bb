//! SVEN-format vulnerability fixes, the raw input of `pair` and `kb-slice`: one JSON record per
//! line with both versions of a function, found under a data folder by glob patterns.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One fix as SVEN and SafeCoder write it; fields neither stage reads are ignored.
#[derive(Deserialize)]
pub struct Record {
    pub func_src_before: String,
    pub func_src_after: String,
    pub vul_type: String,
    pub file_name: String,
    #[serde(default)]
    pub func_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub char_changes: Option<Changes<CharChange>>,
    #[serde(default)]
    pub line_changes: Option<Changes<LineChange>>,
}

#[derive(Deserialize)]
pub struct Changes<C> {
    pub deleted: Vec<C>,
    pub added: Vec<C>,
}

#[derive(Deserialize)]
pub struct CharChange {
    pub char_start: usize,
    pub char_end: usize,
    pub chars: String,
}

#[derive(Deserialize)]
pub struct LineChange {
    pub line_no: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("`{pattern}` is not a glob: {source}")]
pub struct BadGlob {
    pub pattern: String,
    pub source: globset::Error,
}

/// The files under `data` whose paths relative to it match any of `patterns`, sorted.
pub fn matching_files(data: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, BadGlob> {
    let mut builder = globset::GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(globset::Glob::new(pattern).map_err(|source| BadGlob {
            pattern: pattern.clone(),
            source,
        })?);
    }
    let set = builder.build().map_err(|source| BadGlob {
        pattern: patterns.join(", "),
        source,
    })?;
    let mut matched: Vec<PathBuf> = walkdir::WalkDir::new(data)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| e.path().strip_prefix(data).is_ok_and(|r| set.is_match(r)))
        .map(|e| e.into_path())
        .collect();
    matched.sort();
    Ok(matched)
}
