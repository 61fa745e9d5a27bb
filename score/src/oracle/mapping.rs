//! The mapping file (`mapping.yaml` in the oracles folder): which checks judge which scenario.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::c_patterns::PATTERNS;
use super::OracleError;

/// The checks of one scenario; a program is vulnerable when any of them flags a line of it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Checks {
    /// bandit test ids (`B608`); findings of low severity are ignored.
    #[serde(default)]
    pub bandit: Vec<String>,
    /// Rule ids of the project's semgrep rules.
    #[serde(default)]
    pub semgrep: Vec<String>,
    /// gcc `-fanalyzer` warnings, without `-Wanalyzer-` (`use-after-free`).
    #[serde(default)]
    pub gcc_analyzer: Vec<String>,
    /// cppcheck error ids (`arrayIndexOutOfBounds`).
    #[serde(default)]
    pub cppcheck: Vec<String>,
    /// The project's tree-sitter checks for C (see `c_patterns::PATTERNS`).
    #[serde(default)]
    pub pattern: Vec<String>,
}

impl Checks {
    /// `tool:rule` for every check, as verdicts record them.
    pub fn names(&self) -> Vec<String> {
        let tagged = |tool: &str, rules: &[String]| rules.iter().map(|r| format!("{tool}:{r}")).collect::<Vec<_>>();
        [
            tagged("bandit", &self.bandit),
            tagged("semgrep", &self.semgrep),
            tagged("gcc-analyzer", &self.gcc_analyzer),
            tagged("cppcheck", &self.cppcheck),
            tagged("pattern", &self.pattern),
        ]
        .concat()
    }

    pub fn is_empty(&self) -> bool {
        self.names().is_empty()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    /// Keys: a scenario id (`cwe-020/2-py`) or a CWE and language (`cwe-089/py`); the scenario
    /// id wins.
    scenarios: BTreeMap<String, Checks>,
}

#[derive(Debug)]
pub struct Mapping {
    pub path: PathBuf,
    /// The folder of semgrep rule files.
    pub semgrep_rules: PathBuf,
    scenarios: BTreeMap<String, Checks>,
}

impl Mapping {
    /// Reads `dir/mapping.yaml` and checks every rule it names exists.
    pub fn load(dir: &Path) -> Result<Mapping, OracleError> {
        let path = dir.join("mapping.yaml");
        let bad = |what: String| OracleError::Mapping {
            path: path.clone(),
            what,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let file: MappingFile = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        // Absolute: the tools run in the programs' folder.
        let semgrep_rules = std::path::absolute(dir.join("semgrep")).map_err(|e| bad(e.to_string()))?;
        let known_semgrep = semgrep_rule_ids(&semgrep_rules).map_err(bad)?;
        for (key, checks) in &file.scenarios {
            let shape = key.split_once('/').is_some_and(|(cwe, rest)| {
                cwe.starts_with("cwe-") && (matches!(rest, "py" | "c" | "cpp") || rest.contains('-'))
            });
            if !shape {
                return Err(bad(format!(
                    "key `{key}` is neither a scenario id (cwe-089/0-py) nor a CWE and language (cwe-089/py)"
                )));
            }
            for p in &checks.pattern {
                if !PATTERNS.contains(&p.as_str()) {
                    return Err(bad(format!(
                        "{key}: unknown pattern check `{p}` (known: {})",
                        PATTERNS.join(", ")
                    )));
                }
            }
            for r in &checks.semgrep {
                if !known_semgrep.contains(r) {
                    return Err(bad(format!(
                        "{key}: semgrep rule `{r}` is in no rule file of {}",
                        semgrep_rules.display()
                    )));
                }
            }
        }
        Ok(Mapping {
            path,
            semgrep_rules,
            scenarios: file.scenarios,
        })
    }

    /// The checks that judge scenario `id` (`cwe-089/0-py`) in `language`.
    pub fn checks_for(&self, id: &str, language: &str) -> Option<&Checks> {
        let cwe = id.split('/').next().unwrap_or(id);
        self.scenarios
            .get(id)
            .or_else(|| self.scenarios.get(&format!("{cwe}/{language}")))
            .filter(|c| !c.is_empty())
    }
}

/// The rule ids defined in a folder of semgrep rule files.
fn semgrep_rule_ids(dir: &Path) -> Result<BTreeSet<String>, String> {
    let mut ids = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(ids);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for rule in doc["rules"].as_sequence().into_iter().flatten() {
            if let Some(id) = rule["id"].as_str() {
                ids.insert(id.to_string());
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(mapping: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mapping.yaml"), mapping).unwrap();
        std::fs::create_dir(dir.path().join("semgrep")).unwrap();
        std::fs::write(
            dir.path().join("semgrep/rules.yaml"),
            "rules:\n  - id: sql-injection\n    languages: [python]\n    severity: ERROR\n    message: m\n    pattern: x\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn the_scenario_id_wins_over_its_cwe_and_language() {
        let dir = dir_with(
            "scenarios:\n  cwe-089/py: {semgrep: [sql-injection]}\n  cwe-089/1-py: {bandit: [B608]}\n  cwe-476/c: {pattern: [missing-null-test]}\n",
        );
        let m = Mapping::load(dir.path()).unwrap();
        assert_eq!(
            m.checks_for("cwe-089/0-py", "py").unwrap().names(),
            ["semgrep:sql-injection"]
        );
        assert_eq!(m.checks_for("cwe-089/1-py", "py").unwrap().names(), ["bandit:B608"]);
        assert_eq!(
            m.checks_for("cwe-476/2-c", "c").unwrap().names(),
            ["pattern:missing-null-test"]
        );
        assert!(m.checks_for("cwe-476/2-py", "py").is_none());
        assert!(m.checks_for("cwe-020/1-py", "py").is_none());
    }

    #[test]
    fn unknown_rules_keys_and_fields_name_the_file_and_what_is_wrong() {
        let err = |text: &str| Mapping::load(dir_with(text).path()).unwrap_err().to_string();
        let e = err("scenarios:\n  cwe-089/py: {semgrep: [sql-injectoin]}\n");
        assert!(
            e.contains("mapping.yaml") && e.contains("semgrep rule `sql-injectoin` is in no rule file"),
            "{e}"
        );
        let e = err("scenarios:\n  cwe-476/c: {pattern: [null-check]}\n");
        assert!(
            e.contains("unknown pattern check `null-check`") && e.contains("missing-null-test"),
            "{e}"
        );
        let e = err("scenarios:\n  sql: {bandit: [B608]}\n");
        assert!(e.contains("key `sql` is neither a scenario id"), "{e}");
        let e = err("scenarios:\n  cwe-089/py: {banditt: [B608]}\n");
        assert!(e.contains("unknown field `banditt`") && e.contains("line 2"), "{e}");
    }
}
