//! JSON Lines: one value per line; blank lines are skipped.

use std::path::Path;

use secvec_stage::StageContext;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ArtifactError;

/// Each value of `path` with its 1-based line number.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<(usize, T)>, ArtifactError> {
    let text = std::fs::read_to_string(path).map_err(|source| ArtifactError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map(|v| (i + 1, v))
                .map_err(|e| ArtifactError::Line {
                    path: path.to_path_buf(),
                    line: i + 1,
                    what: e.to_string(),
                })
        })
        .collect()
}

/// Writes `rows` to `rel` inside the stage's output, one per line.
pub fn write<T: Serialize>(ctx: &StageContext, rel: &str, rows: &[T]) -> Result<(), ArtifactError> {
    let mut text = String::new();
    for row in rows {
        // Serialising plain data types into a string cannot fail.
        text.push_str(&serde_json::to_string(row).expect("serialisable"));
        text.push('\n');
    }
    ctx.write(rel, text).map_err(|source| ArtifactError::Write {
        path: ctx.out_dir().join(rel),
        source,
    })
}
