//! `results`: rows of figures a stage reports (`results.json`, `{"rows": [{...}, ...]}`), which
//! `report` turns into the papers' tables.

use std::path::Path;

use secvec_engine::StageContext;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ArtifactError;

pub const TAG: &str = "results";
pub const FILE: &str = "results.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// One object per row; its keys are the columns.
    pub rows: Vec<Map<String, Value>>,
    /// `score`: the metrics averaged over each set of scenarios.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<Map<String, Value>>,
}

impl Results {
    /// Results from `json!({...})` rows; a row that is not an object is a bug in its writer.
    pub fn from_rows(rows: impl IntoIterator<Item = Value>) -> Results {
        Results {
            rows: objects(rows),
            sets: Vec::new(),
        }
    }

    pub fn with_sets(self, sets: impl IntoIterator<Item = Value>) -> Results {
        Results {
            sets: objects(sets),
            ..self
        }
    }

    /// The results inside an output directory.
    pub fn read(dir: &Path) -> Result<Results, ArtifactError> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ArtifactError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| ArtifactError::File {
            path,
            what: format!("not {{\"rows\": [objects]}}: {e}"),
        })
    }

    pub fn write(&self, ctx: &StageContext) -> Result<(), ArtifactError> {
        let bytes = serde_json::to_vec_pretty(self).expect("serialisable");
        ctx.write(FILE, bytes).map_err(|source| ArtifactError::Write {
            path: ctx.out_dir().join(FILE),
            source,
        })
    }
}

fn objects(values: impl IntoIterator<Item = Value>) -> Vec<Map<String, Value>> {
    values
        .into_iter()
        .map(|r| match r {
            Value::Object(m) => m,
            other => panic!("a results row must be an object, not {other}"),
        })
        .collect()
}
