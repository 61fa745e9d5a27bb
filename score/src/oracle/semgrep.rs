//! semgrep with the project's own rule files (never registry packs), run once over every
//! program that needs it, deaf to `# nosemgrep`. A program it did not scan, or reported an error
//! on (a timeout, a parse failure), is unchecked.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Checked, Finding, OracleError, ToolRunner};

#[derive(Deserialize)]
struct Report {
    results: Vec<Match>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
    paths: Paths,
}

#[derive(Deserialize)]
struct Paths {
    #[serde(default)]
    scanned: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct Match {
    check_id: String,
    path: PathBuf,
    start: Position,
    extra: Extra,
}

#[derive(Deserialize)]
struct Position {
    line: usize,
}

#[derive(Deserialize)]
struct Extra {
    message: String,
}

pub fn run(
    runner: &ToolRunner,
    semgrep: &str,
    cwd: &Path,
    rules: &Path,
    files: &[PathBuf],
    jobs: usize,
) -> Result<Checked, OracleError> {
    if files.is_empty() {
        return Ok(Checked::default());
    }
    let mut args: Vec<String> = [
        "scan",
        "--config",
        &rules.display().to_string(),
        "--json",
        "--quiet",
        "--metrics=off",
        "--disable-version-check",
        "--no-git-ignore",
        "--disable-nosem",
        // Every file, whatever its size (the score stage caps programs' size itself).
        "--max-target-bytes",
        "0",
        "--jobs",
        &jobs.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(files.iter().map(|f| f.display().to_string()));
    let rules_dir = rules.to_path_buf();
    let out = runner.output("semgrep", semgrep, &args, cwd, &[rules_dir], &[0, 1])?;
    parse(&out, files)
}

fn parse(json: &str, files: &[PathBuf]) -> Result<Checked, OracleError> {
    let report: Report = serde_json::from_str(json).map_err(|e| OracleError::Output {
        tool: "semgrep",
        what: e.to_string(),
    })?;
    // Errors about a target (a file it cannot parse) leave that file unjudged by semgrep;
    // any other error (a rule, the configuration) would silently judge everything secure.
    if let Some(e) = report
        .errors
        .iter()
        .find(|e| e.get("path").is_none() && e["level"] == "error")
    {
        return Err(OracleError::Output {
            tool: "semgrep",
            what: e.to_string(),
        });
    }
    let mut unchecked: Vec<(PathBuf, String)> = report
        .errors
        .iter()
        .filter_map(|e| {
            let path = PathBuf::from(e.get("path")?.as_str()?);
            let what = e.get("type").map(|t| t.to_string()).unwrap_or_else(|| e.to_string());
            Some((path, format!("semgrep reported an error on it: {what}")))
        })
        .collect();
    unchecked.extend(
        files
            .iter()
            .filter(|f| !report.paths.scanned.contains(f))
            .map(|f| (f.clone(), "semgrep did not scan it".to_string())),
    );
    let found = report
        .results
        .into_iter()
        .map(|m| {
            // check_id is prefixed with the rule file's path: `manifests.oracles.semgrep.sql-injection`.
            let rule = m.check_id.rsplit('.').next().unwrap_or(&m.check_id).to_string();
            let finding = Finding {
                oracle: "semgrep".into(),
                rule,
                line: m.start.line,
                message: m.extra.message,
            };
            (m.path, finding)
        })
        .collect();
    Ok(Checked { found, unchecked })
}

#[cfg(test)]
mod tests {
    /// The rules against their annotated cases (`python.py` beside them), with semgrep's own
    /// test mode.
    #[test]
    fn the_rules_flag_their_cases_and_nothing_else() {
        let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/oracles/semgrep");
        let cwd = tempfile::tempdir().unwrap();
        let Ok(semgrep) = crate::toolchain::find("semgrep") else {
            eprintln!("notice: semgrep is not installed (scripts/setup.sh installs it); skipping");
            return;
        };
        let out = std::process::Command::new(semgrep)
            .args(["--test", "--metrics=off", "--disable-version-check"])
            .arg(&rules)
            .current_dir(cwd.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("All tests passed"), "{text}");
    }

    #[test]
    fn rule_ids_lose_their_path_prefix_and_files_with_errors_are_unchecked() {
        let json = r#"{"errors": [{"type": ["Timeout", 1], "level": "warn", "path": "/t/p4.py"}],
            "paths": {"scanned": ["/t/p3.py", "/t/p4.py"]},
            "results": [{"check_id": "tmp.oracles.semgrep.sql-injection",
            "path": "/t/p3.py", "start": {"line": 12, "col": 5}, "end": {"line": 12, "col": 40},
            "extra": {"message": "SQL text built by formatting", "severity": "ERROR"}}]}"#;
        let files = ["/t/p3.py", "/t/p4.py", "/t/p5.py"].map(std::path::PathBuf::from);
        let checked = super::parse(json, &files).unwrap();
        let unchecked: Vec<&std::path::Path> = checked.unchecked.iter().map(|(p, _)| p.as_path()).collect();
        assert_eq!(unchecked, [&files[1], &files[2]], "a timeout and a file not scanned");
        let found = checked.found;
        assert_eq!(found[0].0, std::path::PathBuf::from("/t/p3.py"));
        assert_eq!((found[0].1.rule.as_str(), found[0].1.line), ("sql-injection", 12));
        let bad_rule = r#"{"results": [], "paths": {"scanned": []},
            "errors": [{"code": 4, "level": "error", "type": "InvalidRuleSchemaError"}]}"#;
        assert!(super::parse(bad_rule, &[])
            .unwrap_err()
            .to_string()
            .contains("InvalidRuleSchemaError"));
    }
}
