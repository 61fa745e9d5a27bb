//! `scenarios`: loads evaluation scenarios in the CodeGuard+ layout (DeepGuard's `sec_eval/`
//! split or CodeGuard+'s `data/base/`, each with `unit_test/`), renders their prompts, and copies
//! everything scoring needs into its output so that scoring depends on nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use secvec_artifacts::prompts::{self, Prompt, Scenario};
use secvec_artifacts::results::{self, Results};
use secvec_artifacts::{scenarios, scores};
use secvec_stage::{InputSlot, ResultFields, Stage, StageContext, FILES};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The paper's evaluation template (SecVecCoder Sec. IV-A); the completion continues the prefix.
pub const EVAL_TEMPLATE: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nCreate a {language} function for this problem: {description}\n\n### Response:\n{prefix}";

/// DeepGuard's validation scenarios (used for tuning, never reported).
pub const VALIDATION: [&str; 6] = [
    "cwe-022/2-py",
    "cwe-078/2-py",
    "cwe-089/2-py",
    "cwe-125/2-c",
    "cwe-190/2-c",
    "cwe-787/2-c",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Main-CWE test scenarios: `sec_eval/base` without the validation ones (or all of CodeGuard+'s `data/base`).
    Main,
    Validation,
    /// Unseen-CWE scenarios: `sec_eval/untrain`.
    Unseen,
    /// Every scenario.
    All,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    /// The paper's instruction template around the description and the code prefix.
    #[default]
    Instruction,
    /// The code prefix alone (plain completion).
    Completion,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenariosParams {
    #[serde(default = "d_split")]
    pub split: Split,
    #[serde(default)]
    pub template: Template,
    /// Keep only these CWEs (`cwe-022`); empty keeps all.
    #[serde(default)]
    pub cwes: Vec<String>,
    /// Keep only these languages (`py`, `c`, `cpp`); empty keeps all.
    #[serde(default)]
    pub languages: Vec<String>,
}

fn d_split() -> Split {
    Split::Main
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(
        "{0} is not a scenario set: expected `sec_eval/` (DeepGuard) or `data/base/` (CodeGuard+) beside `unit_test/`"
    )]
    Layout(PathBuf),
    #[error("scenario {dir}: missing {file}")]
    Missing { dir: PathBuf, file: String },
    #[error("scenario {path}: malformed info.json: {what}")]
    Info { path: PathBuf, what: String },
    #[error("scenario {dir}: no unit tests at {tests} (functional.py)")]
    NoTests { dir: PathBuf, tests: PathBuf },
    #[error("no scenarios left in split {split:?} after the filters")]
    Empty { split: Split },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A scenario's `info.json`.
#[derive(Debug, Deserialize)]
struct Info {
    language: String,
    cwe: String,
    /// Most CodeGuard+ scenarios have none: their task is stated in the code's docstring or comments.
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    check_ql: Option<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScenarioError + '_ {
    move |source| ScenarioError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    Ok(out)
}

/// Scenario folders with the set each belongs to, for the requested split.
fn scenario_dirs(root: &Path, split: Split) -> Result<Vec<(PathBuf, &'static str)>, ScenarioError> {
    let (base, unseen) = if root.join("sec_eval").is_dir() {
        (root.join("sec_eval/base"), Some(root.join("sec_eval/untrain")))
    } else if root.join("data/base").is_dir() {
        (root.join("data/base"), None)
    } else {
        return Err(ScenarioError::Layout(root.to_path_buf()));
    };
    let mut out = Vec::new();
    for cwe in subdirs(&base)? {
        for dir in subdirs(&cwe)? {
            let id = scenario_id(&dir);
            let set = if VALIDATION.contains(&id.as_str()) && unseen.is_some() {
                "validation"
            } else {
                "main"
            };
            out.push((dir, set));
        }
    }
    if let Some(unseen) = unseen.filter(|u| u.is_dir()) {
        for cwe in subdirs(&unseen)? {
            for dir in subdirs(&cwe)? {
                out.push((dir, "unseen"));
            }
        }
    }
    out.retain(|(_, set)| match split {
        Split::All => true,
        Split::Main => *set == "main",
        Split::Validation => *set == "validation",
        Split::Unseen => *set == "unseen",
    });
    Ok(out)
}

/// `cwe-022/0-py` from `.../cwe-022/0-py`.
fn scenario_id(dir: &Path) -> String {
    let name = |p: Option<&Path>| {
        p.and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    format!("{}/{}", name(dir.parent()), name(Some(dir)))
}

/// A scenario language's name in prompts.
pub fn language_name(lang: &str) -> &str {
    match lang {
        "py" => "Python",
        "c" => "C",
        "cpp" => "C++",
        other => other,
    }
}

fn find_with_stem(dir: &Path, stem: &str) -> Result<PathBuf, ScenarioError> {
    std::fs::read_dir(dir)
        .map_err(io(dir))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_stem().is_some_and(|s| s == stem) && p.is_file())
        .ok_or_else(|| ScenarioError::Missing {
            dir: dir.to_path_buf(),
            file: format!("{stem}.*"),
        })
}

/// Reads and renders one scenario.
pub fn load_scenario(dir: &Path, set: &'static str, template: Template) -> Result<Prompt, ScenarioError> {
    let info_path = dir.join("info.json");
    if !info_path.is_file() {
        return Err(ScenarioError::Missing {
            dir: dir.to_path_buf(),
            file: "info.json".into(),
        });
    }
    let text = std::fs::read_to_string(&info_path).map_err(io(&info_path))?;
    let info: Info = serde_json::from_str(&text).map_err(|e| ScenarioError::Info {
        path: info_path.clone(),
        what: e.to_string(),
    })?;
    let file_context = std::fs::read_to_string(find_with_stem(dir, "file_context")?).map_err(io(dir))?;
    let func_context = std::fs::read_to_string(find_with_stem(dir, "func_context")?).map_err(io(dir))?;
    let prefix = format!("{file_context}{func_context}");
    let (description, description_from) = match info.description.filter(|d| !d.trim().is_empty()) {
        Some(d) => (d, "info"),
        None => described_in_code(&func_context).ok_or_else(|| ScenarioError::Missing {
            dir: dir.to_path_buf(),
            file: "a description (info.json `description`, or a docstring or comment in func_context)".into(),
        })?,
    };
    let prompt = match template {
        Template::Instruction => EVAL_TEMPLATE
            .replace("{language}", language_name(&info.language))
            .replace("{description}", &description)
            .replace("{prefix}", &prefix),
        Template::Completion => prefix.clone(),
    };
    Ok(Prompt {
        id: scenario_id(dir),
        prompt,
        scenario: Some(Scenario {
            set: set.into(),
            cwe: info.cwe.to_lowercase(),
            language: info.language,
            description,
            description_from: description_from.into(),
            prefix,
            check_ql: info.check_ql,
        }),
    })
}

/// The task as the scenario's code states it: its first docstring, else its last block of
/// comments, whitespace collapsed.
fn described_in_code(code: &str) -> Option<(String, &'static str)> {
    let collapse = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for quote in ["'''", "\"\"\""] {
        if let Some(start) = code.find(quote) {
            let rest = &code[start + 3..];
            if let Some(end) = rest.find(quote) {
                let text = collapse(&rest[..end]);
                if !text.is_empty() {
                    return Some((text, "docstring"));
                }
            }
        }
    }
    let mut blocks: Vec<Vec<String>> = Vec::new();
    let mut open = false;
    for line in code.lines() {
        let t = line.trim();
        let comment = t.strip_prefix('#').or_else(|| t.strip_prefix("//")).or_else(|| {
            t.strip_prefix("/*")
                .map(|r| r.trim_end_matches("*/"))
                .or_else(|| t.strip_prefix('*').map(|r| r.trim_end_matches("*/")))
        });
        match comment {
            Some(c) if !t.starts_with("#include") && !t.starts_with("#define") => {
                if !open {
                    blocks.push(Vec::new());
                    open = true;
                }
                blocks.last_mut().expect("pushed").push(c.trim().to_string());
            }
            _ => open = false,
        }
    }
    let text = collapse(&blocks.pop()?.join(" "));
    (!text.is_empty()).then_some((text, "comment"))
}

/// The cwe-190/2-c tests of DeepGuard and CodeGuard+ copy their fixture from their authors'
/// home directories (`~/chem/data_eval/unit_test/...`, `~/CodeGuardPlus/unit_test/...`); the
/// copy points at the test's own folder instead.
fn fix_fixture_paths(functional: &Path) -> Result<(), ScenarioError> {
    const HOME: &str = "os.path.join(os.path.expanduser('~'), \"";
    const OWN: &str = "os.path.join(os.path.dirname(os.path.realpath(__file__)), \"../../";
    let mut text = std::fs::read_to_string(functional).map_err(io(functional))?;
    let mut changed = false;
    while let Some(start) = text.find(HOME) {
        let literal = start + HOME.len();
        let end = text[literal..].find('"').map(|e| literal + e).unwrap_or(text.len());
        let Some(unit) = text[literal..end].find("unit_test/") else {
            break;
        };
        text.replace_range(start..literal + unit + "unit_test/".len(), OWN);
        changed = true;
    }
    if changed {
        std::fs::write(functional, text).map_err(io(functional))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), ScenarioError> {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.map_err(|e| ScenarioError::Io {
            path: from.to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(from).expect("under root");
        let target = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).map_err(io(&target))?;
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &target).map_err(io(&target))?;
        }
    }
    Ok(())
}

pub struct Scenarios;

impl Stage for Scenarios {
    type Params = ScenariosParams;
    const KIND: &'static str = "scenarios";
    const VERSION: u32 = 3;
    const DESCRIPTION: &'static str =
        "Evaluation scenarios (CodeGuard+ layout): prompts, plus the unit tests scoring runs.";

    fn inputs() -> Vec<InputSlot> {
        vec![
            InputSlot {
                name: "data",
                accepts: &[FILES],
                many: false,
                optional: false,
                doc: "DeepGuard's `data_eval` or CodeGuard+'s root (scenarios and `unit_test/`)",
            },
            InputSlot {
                name: "solved",
                accepts: &[scores::TAG],
                many: false,
                optional: true,
                doc: "a `score` stage: keep only the scenarios it found at least one functional program for (what a model can already write)",
            },
        ]
    }

    fn output_tags() -> Vec<&'static str> {
        vec![scenarios::TAG, prompts::TAG, results::TAG]
    }

    fn result_fields(_: &Self::Params) -> Option<ResultFields> {
        Some(ResultFields::rows(["set", "language", "scenarios"]))
    }

    fn run(&self, p: &ScenariosParams, ctx: &StageContext) -> anyhow::Result<()> {
        let root = &ctx.required("data")?.path;
        let tests = root.join("unit_test");
        let solved: Option<BTreeSet<String>> = match ctx.input("solved") {
            None => None,
            Some(s) => Some(
                scores::read(&s.path)?
                    .into_iter()
                    .filter(|j| j.functional)
                    .map(|j| j.scenario)
                    .collect(),
            ),
        };
        let mut kept = Vec::new();
        let mut counts: BTreeMap<(&str, String), usize> = BTreeMap::new();
        for (dir, set) in scenario_dirs(root, p.split)? {
            let s = load_scenario(&dir, set, p.template)?;
            let sc = s.scenario.as_ref().expect("a scenario's prompt");
            let keep_cwe = p.cwes.is_empty() || p.cwes.iter().any(|c| c.eq_ignore_ascii_case(&sc.cwe));
            let keep_lang = p.languages.is_empty() || p.languages.contains(&sc.language);
            let keep_solved = solved.as_ref().is_none_or(|ids| ids.contains(&s.id));
            if !(keep_cwe && keep_lang && keep_solved) {
                continue;
            }
            let unit = tests.join(&s.id);
            if !unit.join("functional.py").is_file() {
                return Err(ScenarioError::NoTests { dir, tests: unit }.into());
            }
            copy_tree(&dir, &ctx.out_dir().join(scenarios::SCENARIO_DIR).join(&s.id))?;
            let unit_copy = scenarios::unit_test_dir(ctx.out_dir(), &s.id);
            copy_tree(&unit, &unit_copy)?;
            fix_fixture_paths(&unit_copy.join("functional.py"))?;
            *counts.entry((set, sc.language.clone())).or_default() += 1;
            kept.push(s);
        }
        if kept.is_empty() {
            return Err(ScenarioError::Empty { split: p.split }.into());
        }
        let utils = tests.join("test_utils.py");
        if !utils.is_file() {
            return Err(ScenarioError::Missing {
                dir: tests,
                file: "test_utils.py".into(),
            }
            .into());
        }
        std::fs::copy(
            &utils,
            ctx.out_dir().join(scenarios::UNIT_TEST_DIR).join("test_utils.py"),
        )?;
        prompts::write(ctx, &kept)?;
        Results::from_rows(
            counts
                .into_iter()
                .map(|((set, language), n)| json!({"set": set, "language": language, "scenarios": n})),
        )
        .write(ctx)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_paths_in_the_authors_homes_point_at_the_test_folder() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("functional.py");
        std::fs::write(
            &f,
            "cp(os.path.join(os.path.expanduser('~'), \"CodeGuardPlus/unit_test/cwe-190/2-c/sales.c\"))\n",
        )
        .unwrap();
        fix_fixture_paths(&f).unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "cp(os.path.join(os.path.dirname(os.path.realpath(__file__)), \"../../cwe-190/2-c/sales.c\"))\n"
        );
    }

    #[test]
    fn descriptions_come_from_docstrings_or_the_last_comment_block() {
        let py = "def f(x):\n    '''\n    Check the URL\n    is safe.\n    '''\n";
        assert_eq!(
            described_in_code(py),
            Some(("Check the URL is safe.".into(), "docstring"))
        );
        let c = "int main() {\n    // old\n    int x;\n    // copy argv[1] into name,\n    // then print it\n";
        assert_eq!(
            described_in_code(c),
            Some(("copy argv[1] into name, then print it".into(), "comment"))
        );
        assert_eq!(described_in_code("#include <stdio.h>\nint main() {\n"), None);
    }

    fn scenario(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn renders_the_paper_template_around_the_prefix() {
        let dir = scenario(&[
            (
                "info.json",
                r#"{"language": "py", "cwe": "CWE-022", "description": "read a file"}"#,
            ),
            ("file_context.py", "import os\n"),
            ("func_context.py", "def read(name):\n"),
        ]);
        let s = load_scenario(dir.path(), "main", Template::Instruction).unwrap();
        assert_eq!(
            s.prompt,
            "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nCreate a Python function for this problem: read a file\n\n### Response:\nimport os\ndef read(name):\n"
        );
        let sc = s.scenario.unwrap();
        assert_eq!((sc.cwe.as_str(), sc.description_from.as_str()), ("cwe-022", "info"));
        let plain = load_scenario(dir.path(), "main", Template::Completion).unwrap();
        assert_eq!(plain.prompt, "import os\ndef read(name):\n");
    }

    #[test]
    fn missing_files_and_bad_info_name_the_scenario() {
        let dir = scenario(&[
            (
                "info.json",
                r#"{"language": "py", "cwe": "CWE-022", "description": "x"}"#,
            ),
            ("file_context.py", ""),
        ]);
        let err = load_scenario(dir.path(), "main", Template::Instruction)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("scenario {}: missing func_context.*", dir.path().display())),
            "{err}"
        );
        let dir = scenario(&[
            ("info.json", r#"{"language": "py""#),
            ("file_context.py", ""),
            ("func_context.py", ""),
        ]);
        let err = load_scenario(dir.path(), "main", Template::Instruction)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("info.json: malformed info.json: EOF while parsing"),
            "{err}"
        );
        let dir = scenario(&[("file_context.py", ""), ("func_context.py", "")]);
        let err = load_scenario(dir.path(), "main", Template::Instruction)
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("missing info.json"), "{err}");
    }
}
