//! `results`: rows of figures a stage reports (`results.json`, `{"rows": [{...}, ...]}`), which
//! `report` turns into the papers' tables.

use std::path::Path;

use secvec_stage::StageContext;
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

    /// Writes the results of a kind that declares their fields ([`StageContext::result_fields`]);
    /// a field it did not declare is a bug in the kind, which the stages downstream could not
    /// have been checked against.
    pub fn write(&self, ctx: &StageContext) -> Result<(), ArtifactError> {
        let undeclared = |what: String| ArtifactError::File {
            path: ctx.out_dir().join(FILE),
            what,
        };
        let declared = ctx
            .result_fields()
            .ok_or_else(|| undeclared("the stage kind does not declare the fields of its results".into()))?;
        for (pool, rows, fields) in [
            ("rows", &self.rows, &declared.rows),
            ("sets", &self.sets, &declared.sets),
        ] {
            if let Some(field) = rows.iter().flat_map(|r| r.keys()).find(|k| !fields.contains(k)) {
                return Err(undeclared(format!(
                    "the stage kind writes field `{field}` in its {pool}, which it does not declare"
                )));
            }
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use secvec_stage::{ProgressSink, ResultFields};
    use serde_json::json;

    use super::*;

    struct Quiet;
    impl ProgressSink for Quiet {
        fn progress(&self, _: u64, _: u64) {}
        fn message(&self, _: &str) {}
        fn notice(&self, _: &str) {}
    }

    fn context(dir: &Path, fields: Option<ResultFields>) -> StageContext {
        StageContext::new(
            Default::default(),
            dir.join("out"),
            dir.join("scratch"),
            secvec_cache::Memo::new(dir.join("memo")),
            Arc::new(Quiet),
            Arc::new(AtomicBool::new(false)),
        )
        .declaring(fields)
    }

    #[test]
    fn only_the_fields_a_kind_declares_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let declared = ResultFields::rows(["set", "n"]).with_sets(["set"]);
        let ctx = context(dir.path(), Some(declared));
        let good = Results::from_rows([json!({"set": "main", "n": 3})]).with_sets([json!({"set": "main"})]);
        good.write(&ctx).unwrap();
        assert_eq!(Results::read(ctx.out_dir()).unwrap(), good);

        let err = Results::from_rows([json!({"set": "main", "pass@1": 0.5})])
            .write(&ctx)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("writes field `pass@1` in its rows, which it does not declare"),
            "{err}"
        );
        let err = Results::from_rows([json!({"set": "main"})])
            .with_sets([json!({"n": 1})])
            .write(&ctx)
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `n` in its sets"), "{err}");

        let undeclared = context(dir.path(), None);
        let err = good.write(&undeclared).unwrap_err().to_string();
        assert!(err.contains("does not declare the fields of its results"), "{err}");
    }
}
