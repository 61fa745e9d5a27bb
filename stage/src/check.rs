//! What a stage can check before anything runs: its params against what its upstream stages
//! will give it (the fields of their results rows, their matrix labels).

use std::collections::BTreeMap;

/// The fields of the `results.json` rows a stage writes, known from its params at plan time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultFields {
    /// Fields of each row of `rows`.
    pub rows: Vec<String>,
    /// Fields of each row of `sets` (empty when the stage writes none).
    pub sets: Vec<String>,
}

impl ResultFields {
    pub fn rows<S: Into<String>>(fields: impl IntoIterator<Item = S>) -> ResultFields {
        ResultFields {
            rows: fields.into_iter().map(Into::into).collect(),
            sets: Vec::new(),
        }
    }

    pub fn with_sets<S: Into<String>>(self, fields: impl IntoIterator<Item = S>) -> ResultFields {
        ResultFields {
            sets: fields.into_iter().map(Into::into).collect(),
            ..self
        }
    }
}

/// One artifact an input slot will receive, as far as the plan knows it.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The matrix and constant labels its variant carries (`theta`, `strategy`).
    pub labels: Vec<String>,
    /// The fields of its results rows; `None` when not known before it runs (a path on disk).
    pub fields: Option<ResultFields>,
}

/// What each input slot of a concrete stage will receive.
#[derive(Clone, Debug, Default)]
pub struct Upstreams {
    pub slots: BTreeMap<String, Vec<Upstream>>,
}

impl Upstreams {
    pub fn slot(&self, name: &str) -> &[Upstream] {
        self.slots.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// A param that cannot work: where it is within the stage's params (`tables[0].columns[2]`) and
/// what is wrong with it, in words that say what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{path}`: {message}")]
pub struct ParamError {
    pub path: String,
    pub message: String,
}

impl ParamError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ParamError {
        ParamError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// ` (did you mean `x`?)` when a known name is close to `name`, else nothing.
pub fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    known
        .into_iter()
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}
