//! `pair`: reads secure/vulnerable function pairs in SVEN's JSONL format and emits training
//! triples (prompt, secure, vulnerable) with the byte spans where the two differ, which later
//! become LPO's token masks.

mod record;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use schemars::JsonSchema;
use secvec_stage::{InputSlot, ResultFields, Stage, StageContext, FILES};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use record::RecordError;
use secvec_artifacts::language::Language;
use secvec_artifacts::pairs;
use secvec_artifacts::results::{self, Results};

/// The instruction-tuning template of the SecVecCoder paper (Sec. IV-A); the completion follows it.
pub const PAPER_TEMPLATE: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PairParams {
    /// JSONL files of each split, as glob patterns relative to the `data` input.
    #[serde(default = "default_splits")]
    pub splits: IndexMap<String, Vec<String>>,
    /// Keep only these languages (`python`, `c`, `cpp`, `javascript`, `go`, `ruby`, `java`); empty keeps all.
    #[serde(default)]
    pub languages: Vec<Language>,
    /// Keep only these CWEs (e.g. `cwe-089`); empty keeps all.
    #[serde(default)]
    pub cwes: Vec<String>,
    /// Keep at most this many pairs per split, language and CWE, the first in file order: a
    /// stratified subset for runs on small machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_group: Option<usize>,
    /// Prompt template; `{instruction}` is replaced by the pair's instruction.
    #[serde(default = "default_template")]
    pub template: String,
    /// The instruction of a pair without a `description`; may use `{language}`, `{func_name}`, `{cwe}`.
    #[serde(default = "default_instruction")]
    pub instruction: String,
}

fn default_splits() -> IndexMap<String, Vec<String>> {
    IndexMap::from([
        ("train".into(), vec!["train/*.jsonl".into()]),
        ("val".into(), vec!["val/*.jsonl".into()]),
    ])
}
fn default_template() -> String {
    PAPER_TEMPLATE.to_string()
}
fn default_instruction() -> String {
    "Create a {language} function `{func_name}`.".to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("the `data` input {0} must be a directory holding the split files")]
    NotADirectory(PathBuf),
    #[error(
        "split `{split}`: no file under {dir} matches {patterns:?}; set `params.splits` to the files of each split"
    )]
    NoFiles {
        split: String,
        dir: PathBuf,
        patterns: Vec<String>,
    },
    #[error(transparent)]
    Glob(#[from] crate::fixes::BadGlob),
    #[error("`template` must contain `{{instruction}}`")]
    Template,
    #[error("{count} malformed line(s); fix or remove them:\n{list}")]
    Malformed { count: usize, list: String },
    #[error("no pairs are left after the language and CWE filters (languages {languages:?}, cwes {cwes:?})")]
    Empty {
        languages: Vec<Language>,
        cwes: Vec<String>,
    },
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub struct Pair;

impl Stage for Pair {
    type Params = PairParams;
    const KIND: &'static str = "pair";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str =
        "Dataset pairing: SVEN-format JSONL into (prompt, secure, vulnerable) triples with diff spans.";

    fn inputs() -> Vec<InputSlot> {
        vec![InputSlot {
            name: "data",
            accepts: &[FILES],
            many: false,
            optional: false,
            doc: "a directory of SVEN-format JSONL files",
        }]
    }

    fn output_tags() -> Vec<&'static str> {
        vec![pairs::TAG, results::TAG]
    }

    fn result_fields(_: &Self::Params) -> Option<ResultFields> {
        Some(ResultFields::rows([
            "split",
            "language",
            "cwe",
            "pairs",
            "identical_pairs",
            "secure_diff_bytes",
            "vulnerable_diff_bytes",
        ]))
    }

    fn run(&self, params: &PairParams, ctx: &StageContext) -> anyhow::Result<()> {
        let data = ctx.required("data")?.path.clone();
        let out = pair_dataset(&data, params, &|done, total| ctx.progress(done, total))?;
        for (split, list) in &out.splits {
            pairs::write(ctx, split, list)?;
        }
        Results::from_rows(out.stats).write(ctx)?;
        Ok(())
    }
}

pub struct Paired {
    pub splits: IndexMap<String, Vec<pairs::Pair>>,
    pub stats: Vec<serde_json::Value>,
}

/// Reads every split, checks every line, and applies the filters. Pure apart from reading `data`.
pub fn pair_dataset(data: &Path, params: &PairParams, progress: &dyn Fn(u64, u64)) -> Result<Paired, PairError> {
    if !data.is_dir() {
        return Err(PairError::NotADirectory(data.to_path_buf()));
    }
    if !params.template.contains("{instruction}") {
        return Err(PairError::Template);
    }
    let mut files: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for (split, patterns) in &params.splits {
        let matched = crate::fixes::matching_files(data, patterns)?;
        if matched.is_empty() {
            return Err(PairError::NoFiles {
                split: split.clone(),
                dir: data.to_path_buf(),
                patterns: patterns.clone(),
            });
        }
        files.push((split.clone(), matched));
    }
    let total: u64 = files.iter().map(|(_, f)| f.len() as u64).sum();
    let mut done = 0;
    let mut errors = Vec::new();
    let mut splits = IndexMap::new();
    for (split, paths) in files {
        let mut pairs = Vec::new();
        let mut per_group: BTreeMap<(Language, String), usize> = BTreeMap::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| PairError::Io {
                path: path.clone(),
                source,
            })?;
            let rel = path.strip_prefix(data).unwrap_or(&path).to_string_lossy().to_string();
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let id = format!("{rel}:{}", n + 1);
                match record::parse_line(line, &id, &split, params) {
                    Ok(p) => {
                        let keep_lang = params.languages.is_empty() || params.languages.contains(&p.language);
                        let keep_cwe =
                            params.cwes.is_empty() || params.cwes.iter().any(|c| c.eq_ignore_ascii_case(&p.cwe));
                        let seen = per_group.entry((p.language, p.cwe.to_ascii_lowercase())).or_default();
                        if keep_lang && keep_cwe && params.per_group.is_none_or(|n| *seen < n) {
                            *seen += 1;
                            pairs.push(p);
                        }
                    }
                    Err(e) => errors.push(format!("  {}:{}: {e}", path.display(), n + 1)),
                }
            }
            done += 1;
            progress(done, total);
        }
        splits.insert(split, pairs);
    }
    if !errors.is_empty() {
        let count = errors.len();
        let mut list = errors.into_iter().take(20).collect::<Vec<_>>().join("\n");
        if count > 20 {
            list.push_str(&format!("\n  … and {} more", count - 20));
        }
        return Err(PairError::Malformed { count, list });
    }
    if splits.values().all(|v: &Vec<pairs::Pair>| v.is_empty()) {
        return Err(PairError::Empty {
            languages: params.languages.clone(),
            cwes: params.cwes.clone(),
        });
    }
    let stats = statistics(&splits);
    Ok(Paired { splits, stats })
}

/// One row per split, language and CWE: how many pairs, how many have identical sides (a
/// dataset defect SVEN has four of; kept, with no spans), and how much of each side the diff touches.
fn statistics(splits: &IndexMap<String, Vec<pairs::Pair>>) -> Vec<serde_json::Value> {
    #[derive(Default)]
    struct Group {
        pairs: usize,
        identical: usize,
        secure: usize,
        vulnerable: usize,
    }
    let mut groups: BTreeMap<(&str, &str, &str), Group> = BTreeMap::new();
    for (split, pairs) in splits {
        for p in pairs {
            let g = groups
                .entry((split.as_str(), p.language.name(), p.cwe.as_str()))
                .or_default();
            g.pairs += 1;
            g.identical += usize::from(p.secure == p.vulnerable);
            g.secure += p.secure_spans.iter().map(|s| s[1] - s[0]).sum::<usize>();
            g.vulnerable += p.vulnerable_spans.iter().map(|s| s[1] - s[0]).sum::<usize>();
        }
    }
    groups
        .into_iter()
        .map(|((split, language, cwe), g)| {
            json!({
                "split": split,
                "language": language,
                "cwe": cwe,
                "pairs": g.pairs,
                "identical_pairs": g.identical,
                "secure_diff_bytes": g.secure as f64 / g.pairs as f64,
                "vulnerable_diff_bytes": g.vulnerable as f64 / g.pairs as f64,
            })
        })
        .collect()
}
