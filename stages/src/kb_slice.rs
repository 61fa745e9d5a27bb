//! `kb-slice`: Rescue's security-focused program slicing over a folder of SVEN-format fixes
//! (§2.1.2): each Python, C or C++ fix becomes a knowledge-base example with both versions
//! sliced around the fix and the APIs they call, and the lines of code before and after slicing
//! are reported (Table 6).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use secvec_artifacts::kb::{self, Example};
use secvec_artifacts::language::Language;
use secvec_artifacts::results::{self, Results};
use secvec_slicing::slice::changed_lines;
use secvec_slicing::{api_calls, slice_fix, Fix};
use secvec_stage::{InputSlot, ResultFields, Stage, StageContext, FILES};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::fixes::Record;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KbSliceParams {
    /// Files of fixes under the `data` folder (globs, relative to it).
    #[serde(default = "files")]
    pub files: Vec<String>,
    /// Dependence edges a slice follows from the changed lines, each way.
    #[serde(default = "hops")]
    pub hops: usize,
    /// Keep fixes in these languages (Rescue: Python, C and C++).
    #[serde(default = "languages")]
    pub languages: Vec<Language>,
}

fn files() -> Vec<String> {
    vec!["train/*.jsonl".into()]
}
fn hops() -> usize {
    2
}
fn languages() -> Vec<Language> {
    vec![Language::Python, Language::C, Language::Cpp]
}

impl Default for KbSliceParams {
    fn default() -> Self {
        KbSliceParams {
            files: files(),
            hops: hops(),
            languages: languages(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KbSliceError {
    #[error("`files`: {0}")]
    Glob(#[from] crate::fixes::BadGlob),
    #[error("no file under {dir} matches {patterns:?}; set `files` to globs relative to the data folder")]
    NoFiles { dir: PathBuf, patterns: Vec<String> },
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: not a fix record ({what}); each line needs func_src_before, func_src_after, vul_type and file_name")]
    Record { path: PathBuf, line: usize, what: String },
}

/// Every fix in the matched files, sliced; identical (before, after) pairs once.
pub fn slice_folder(data: &Path, p: &KbSliceParams, progress: &dyn Fn(u64, u64)) -> Result<Vec<Example>, KbSliceError> {
    let paths = crate::fixes::matching_files(data, &p.files)?;
    if paths.is_empty() {
        return Err(KbSliceError::NoFiles {
            dir: data.to_path_buf(),
            patterns: p.files.clone(),
        });
    }
    let mut seen = HashSet::new();
    let mut examples = Vec::new();
    for (done, path) in paths.iter().enumerate() {
        let text = std::fs::read_to_string(path).map_err(|source| KbSliceError::Io {
            path: path.clone(),
            source,
        })?;
        let rel = path.strip_prefix(data).unwrap_or(path).to_string_lossy().to_string();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let raw: Record = serde_json::from_str(line).map_err(|e| KbSliceError::Record {
                path: path.clone(),
                line: n + 1,
                what: e.to_string(),
            })?;
            let Some(language) = Language::from_file_name(&raw.file_name).filter(|l| p.languages.contains(l)) else {
                continue;
            };
            if !seen.insert((raw.func_src_before.clone(), raw.func_src_after.clone())) {
                continue;
            }
            let (deleted, added) = match &raw.line_changes {
                Some(c) => (
                    c.deleted.iter().map(|x| x.line_no).collect(),
                    c.added.iter().map(|x| x.line_no).collect(),
                ),
                None => changed_lines(&raw.func_src_before, &raw.func_src_after),
            };
            let s = slice_fix(
                &Fix {
                    language,
                    before: &raw.func_src_before,
                    after: &raw.func_src_after,
                    deleted,
                    added,
                },
                p.hops,
            );
            examples.push(Example {
                id: format!("{rel}:{}", n + 1),
                cwe: raw.vul_type.to_lowercase(),
                language,
                func_name: raw.func_name.unwrap_or_default(),
                apis_sliced: api_calls(language, &s.secure),
                apis_original: api_calls(language, &raw.func_src_after),
                before: raw.func_src_before,
                after: raw.func_src_after,
                vulnerable: s.vulnerable,
                secure: s.secure,
                vulnerable_lines: s.vulnerable_lines,
                secure_lines: s.secure_lines,
                parse_errors: s.parse_errors,
            });
        }
        progress(done as u64 + 1, paths.len() as u64);
    }
    Ok(examples)
}

/// Non-blank lines of `text`.
fn loc(text: &str) -> usize {
    text.lines().filter(|l| !l.trim().is_empty()).count()
}

/// Table 6's rows: per language and over all, the mean lines of code before and after slicing.
pub fn loc_rows(examples: &[Example]) -> Vec<serde_json::Value> {
    let mut groups: BTreeMap<String, Vec<&Example>> = BTreeMap::new();
    for e in examples {
        groups.entry(e.language.name().to_string()).or_default().push(e);
        groups.entry("all".into()).or_default().push(e);
    }
    groups
        .into_iter()
        .map(|(language, es)| {
            let n = es.len() as f64;
            let mean = |f: &dyn Fn(&Example) -> usize| es.iter().map(|e| f(e) as f64).sum::<f64>() / n;
            json!({
                "language": language,
                "fixes": es.len(),
                "loc_vulnerable_before": mean(&|e| loc(&e.before)),
                "loc_vulnerable_after": mean(&|e| loc(&e.vulnerable)),
                "loc_secure_before": mean(&|e| loc(&e.after)),
                "loc_secure_after": mean(&|e| loc(&e.secure)),
                "with_parse_errors": es.iter().filter(|e| e.parse_errors > 0).count(),
            })
        })
        .collect()
}

pub struct KbSlice;

impl Stage for KbSlice {
    type Params = KbSliceParams;
    const KIND: &'static str = "kb-slice";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str =
        "Rescue's program slicing: each fix's two versions sliced around the fix, with their API calls (Table 6).";

    fn inputs() -> Vec<InputSlot> {
        vec![InputSlot {
            name: "data",
            accepts: &[FILES],
            many: false,
            optional: false,
            doc: "a folder of SVEN-format JSONL fixes (func_src_before/after, vul_type, file_name, line_changes)",
        }]
    }

    fn output_tags() -> Vec<&'static str> {
        vec![kb::TAG, results::TAG]
    }

    fn result_fields(_: &Self::Params) -> Option<ResultFields> {
        Some(ResultFields::rows([
            "language",
            "fixes",
            "loc_vulnerable_before",
            "loc_vulnerable_after",
            "loc_secure_before",
            "loc_secure_after",
            "with_parse_errors",
        ]))
    }

    fn run(&self, p: &KbSliceParams, ctx: &StageContext) -> anyhow::Result<()> {
        let data = &ctx.required("data")?.path;
        let examples = slice_folder(data, p, &|done, total| ctx.progress(done, total))?;
        kb::write(ctx, &examples)?;
        Results::from_rows(loc_rows(&examples)).write(ctx)?;
        Ok(())
    }
}
