//! `prompts`: what a model completes, one JSON line per prompt (`prompts.jsonl`). A `pairs` split
//! file is a prompts file too: its lines carry `id` and `prompt`.

use std::collections::HashMap;
use std::path::Path;

use secvec_stage::StageContext;
use serde::{Deserialize, Deserializer, Serialize};

use crate::{jsonl, ArtifactError};

pub const TAG: &str = "prompts";
pub const FILE: &str = "prompts.jsonl";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    /// Unique within the file; a number in a hand-written file is read as its text.
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    pub prompt: String,
    /// What scoring needs, for the prompts of a CodeGuard+ scenario.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Scenario>,
}

/// A CodeGuard+ scenario behind a prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// The split the scenario belongs to: `main`, `validation` or `unseen`.
    pub set: String,
    pub cwe: String,
    /// `py` or `c`: the extension of the scenario's files.
    pub language: String,
    pub description: String,
    /// Where the description came from: `info`, `docstring` or `comment`.
    pub description_from: String,
    /// The code the completion continues.
    pub prefix: String,
    pub check_ql: Option<String>,
}

/// Reads an id given as a string or a number.
pub(crate) fn id_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "an id must be a string or a number, not {other}"
        ))),
    }
}

/// The prompts of `path`, in file order. Two prompts with one id, or none at all, are errors:
/// samples are matched to prompts by id downstream.
pub fn read(path: &Path) -> Result<Vec<Prompt>, ArtifactError> {
    let rows: Vec<(usize, Prompt)> = jsonl::read(path)?;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (line, p) in &rows {
        if let Some(first) = seen.insert(&p.id, *line) {
            return Err(ArtifactError::Line {
                path: path.to_path_buf(),
                line: *line,
                what: format!(
                    "prompt id {:?} is also the id on line {first}; every prompt needs its own id",
                    p.id
                ),
            });
        }
    }
    if rows.is_empty() {
        return Err(ArtifactError::File {
            path: path.to_path_buf(),
            what: "no prompts".into(),
        });
    }
    Ok(rows.into_iter().map(|(_, p)| p).collect())
}

pub fn write(ctx: &StageContext, prompts: &[Prompt]) -> Result<(), ArtifactError> {
    jsonl::write(ctx, FILE, prompts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn duplicate_ids_name_the_file_and_both_lines() {
        let (_d, path) =
            file("{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"b\", \"prompt\": \"y\"}\n\n{\"id\": \"a\", \"prompt\": \"z\"}\n");
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("prompts.jsonl:4: prompt id \"a\" is also the id on line 1; every prompt needs its own id"),
            "{err}"
        );
        // Samples are matched by the id's text: 1 and "1" are one id.
        let (_d, path) = file("{\"id\": 1, \"prompt\": \"x\"}\n{\"id\": \"1\", \"prompt\": \"y\"}\n");
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains(":2: prompt id \"1\" is also the id on line 1"), "{err}");
    }

    #[test]
    fn a_scenario_prompt_round_trips_and_a_pair_line_reads_as_a_plain_prompt() {
        let prompt = Prompt {
            id: "cwe-022_0".into(),
            prompt: "Write it\n".into(),
            scenario: Some(Scenario {
                set: "main".into(),
                cwe: "cwe-022".into(),
                language: "py".into(),
                description: "read a file".into(),
                description_from: "info".into(),
                prefix: "import os\n".into(),
                check_ql: None,
            }),
        };
        let (_d, path) = file(&format!("{}\n", serde_json::to_string(&prompt).unwrap()));
        assert_eq!(read(&path).unwrap(), vec![prompt]);
        let (_d, path) = file(
            "{\"id\": \"p1\", \"split\": \"val\", \"cwe\": \"cwe-089\", \"language\": \"python\", \"prompt\": \"P\", \"secure\": \"s\"}\n",
        );
        let got = read(&path).unwrap();
        assert_eq!((got[0].id.as_str(), got[0].prompt.as_str()), ("p1", "P"));
        assert_eq!(got[0].scenario, None);
    }

    #[test]
    fn an_id_that_is_neither_text_nor_a_number_is_refused_with_its_line() {
        let (_d, path) = file("{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": [1], \"prompt\": \"y\"}\n");
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("prompts.jsonl:2: an id must be a string or a number"),
            "{err}"
        );
    }
}
