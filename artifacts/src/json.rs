//! One JSON document per file (`results.json`, `diagnostics.json`).

use std::path::Path;

use secvec_stage::StageContext;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ArtifactError;

/// `file` inside the output directory `dir`.
pub fn read<T: DeserializeOwned>(dir: &Path, file: &str, expected: &str) -> Result<T, ArtifactError> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|source| ArtifactError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ArtifactError::File {
        path,
        what: format!("not {expected}: {e}"),
    })
}

/// Writes `value`, pretty-printed, to `file` inside the stage's output.
pub fn write<T: Serialize>(ctx: &StageContext, file: &str, value: &T) -> Result<(), ArtifactError> {
    let bytes = serde_json::to_vec_pretty(value).expect("serialisable");
    ctx.write(file, bytes).map_err(|source| ArtifactError::Write {
        path: ctx.out_dir().join(file),
        source,
    })
}
