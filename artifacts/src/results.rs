//! `results`: rows of figures a stage reports (`results.json`, `{"rows": [{...}, ...]}`), which
//! `report` turns into the papers' tables.

use std::path::Path;

use secvec_engine::StageContext;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{json, ArtifactError};

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
        json::read(dir, FILE, "{\"rows\": [objects]}")
    }

    pub fn write(&self, ctx: &StageContext) -> Result<(), ArtifactError> {
        json::write(ctx, FILE, self)
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
