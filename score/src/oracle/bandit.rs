//! bandit, for the Python CWEs it covers, run once over every program that needs it, deaf to
//! `# nosec`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Checked, Finding, OracleError, ToolRunner};

#[derive(Deserialize)]
struct Report {
    results: Vec<Issue>,
    /// Files bandit could not read (it judges them as having nothing to report).
    #[serde(default)]
    errors: Vec<FileError>,
}

#[derive(Deserialize)]
struct FileError {
    filename: PathBuf,
    reason: String,
}

#[derive(Deserialize)]
struct Issue {
    filename: PathBuf,
    test_id: String,
    line_number: usize,
    issue_severity: String,
    issue_text: String,
}

/// Findings of the bandit `tests` in `files`; low-severity ones (e.g. a shell command made of
/// literals only) are dropped.
pub fn run(
    runner: &ToolRunner,
    bandit: &str,
    cwd: &Path,
    files: &[PathBuf],
    tests: &[String],
) -> Result<Checked, OracleError> {
    if files.is_empty() || tests.is_empty() {
        return Ok(Checked::default());
    }
    let mut args = vec![
        "-f".to_string(),
        "json".into(),
        "-q".into(),
        "--ignore-nosec".into(),
        "-t".into(),
        tests.join(","),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    // Exit status 1 means "issues found".
    let out = runner.output("bandit", bandit, &args, cwd, &[], &[0, 1])?;
    parse(&out)
}

fn parse(json: &str) -> Result<Checked, OracleError> {
    let report: Report = serde_json::from_str(json).map_err(|e| OracleError::Output {
        tool: "bandit",
        what: e.to_string(),
    })?;
    let found = report
        .results
        .into_iter()
        .filter(|i| i.issue_severity != "LOW")
        .map(|i| {
            let finding = Finding {
                oracle: "bandit".into(),
                rule: i.test_id,
                line: i.line_number,
                message: i.issue_text,
            };
            (i.filename, finding)
        })
        .collect();
    Ok(Checked {
        found,
        unchecked: report
            .errors
            .into_iter()
            .map(|e| (e.filename, format!("bandit could not read it: {}", e.reason)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn low_severity_findings_are_dropped_and_unreadable_files_are_unchecked() {
        let json = r#"{"errors": [], "results": [
            {"filename": "/t/p0.py", "test_id": "B608", "line_number": 9, "issue_severity": "MEDIUM", "issue_text": "sql"},
            {"filename": "/t/p1.py", "test_id": "B602", "line_number": 3, "issue_severity": "LOW", "issue_text": "literal"}]}"#;
        let found = super::parse(json).unwrap().found;
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].1.rule.as_str(), found[0].1.line), ("B608", 9));
        let json = r#"{"errors": [{"filename": "/t/p2.py", "reason": "syntax error while parsing AST from file"}], "results": []}"#;
        let unchecked = super::parse(json).unwrap().unchecked;
        assert_eq!(unchecked[0].0, std::path::PathBuf::from("/t/p2.py"), "{:?}", unchecked);
    }
}
