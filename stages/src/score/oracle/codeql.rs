//! CodeQL, as CodeGuard+ runs it: one database per scenario over its programs, analysed with the
//! scenario's `check_ql`; results read from SARIF or CSV. Used only when a `codeql` CLI is on
//! PATH (it cannot be installed on the project's machines, so this path is untested end to end;
//! the readers are tested on files in CodeQL's documented formats).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{tool_output, Finding, OracleError};

/// The query a scenario's `check_ql` names: a file shipped in the scenario's folder (custom
/// queries, with their `qlpack.yml`), or a query of CodeQL's standard packs
/// (`../codeql/codeql-repo/python/ql/src/Security/CWE-022/PathInjection.ql` →
/// `codeql/python-queries:Security/CWE-022/PathInjection.ql`).
pub fn resolve_query(check_ql: &str, scenario_dir: &Path) -> Option<String> {
    let file = Path::new(check_ql).file_name()?;
    let shipped = scenario_dir.join(file);
    if shipped.is_file() {
        return Some(shipped.display().to_string());
    }
    let (before, query) = check_ql.split_once("/ql/src/")?;
    let language = before.rsplit('/').next()?;
    Some(format!("codeql/{language}-queries:{query}"))
}

/// Builds a database of the programs in `dir` and runs `query` on it; findings by file.
pub fn run(codeql: &str, dir: &Path, language: &str, query: &str) -> Result<Vec<(PathBuf, Finding)>, OracleError> {
    let db = dir.join("codeql-db");
    let s = |x: &str| x.to_string();
    let mut create = vec![
        s("database"),
        s("create"),
        db.display().to_string(),
        format!("--source-root={}", dir.display()),
        s("--overwrite"),
    ];
    if language == "py" {
        create.push(s("--language=python"));
    } else {
        create.extend([
            s("--language=cpp"),
            s("--command=sh -c 'for f in *.c; do gcc -c \"$f\" -o /dev/null; done'"),
        ]);
    }
    tool_output("codeql", codeql, &create, dir, &[0])?;
    // CSV is what CodeGuard+ reads; SARIF is read the same way where a user asks for it.
    let results = dir.join("results.csv");
    let analyze = [
        s("database"),
        s("analyze"),
        db.display().to_string(),
        s(query),
        s("--format=csv"),
        format!("--output={}", results.display()),
    ];
    tool_output("codeql", codeql, &analyze, dir, &[0])?;
    Ok(read_results(&results)?
        .into_iter()
        .map(|(uri, f)| (dir.join(uri.trim_start_matches("file://").trim_start_matches('/')), f))
        .collect())
}

/// Findings of a CodeQL results file, `.sarif` or `.csv`.
pub fn read_results(path: &Path) -> Result<Vec<(String, Finding)>, OracleError> {
    let text = std::fs::read_to_string(path).map_err(|e| OracleError::Output {
        tool: "codeql",
        what: format!("{}: {e}", path.display()),
    })?;
    if path.extension().is_some_and(|e| e == "sarif") {
        read_sarif(&text)
    } else {
        read_csv(&text)
    }
}

#[derive(Deserialize)]
struct Sarif {
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    #[serde(default)]
    results: Vec<SarifResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: String,
    message: Message,
    #[serde(default)]
    locations: Vec<SarifLocation>,
}

#[derive(Deserialize)]
struct Message {
    text: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifLocation {
    physical_location: PhysicalLocation,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    #[serde(default)]
    region: Option<Region>,
}

#[derive(Deserialize)]
struct ArtifactLocation {
    uri: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: usize,
}

/// SARIF 2.1.0 (`--format=sarif-latest`): each result at its first location.
fn read_sarif(text: &str) -> Result<Vec<(String, Finding)>, OracleError> {
    let sarif: Sarif = serde_json::from_str(text).map_err(|e| OracleError::Output {
        tool: "codeql",
        what: format!("SARIF: {e}"),
    })?;
    Ok(sarif
        .runs
        .into_iter()
        .flat_map(|r| r.results)
        .filter_map(|r| {
            let loc = r.locations.into_iter().next()?.physical_location;
            let finding = Finding {
                oracle: "codeql".into(),
                rule: r.rule_id,
                line: loc.region.map(|g| g.start_line).unwrap_or(1),
                message: r.message.text,
            };
            Some((loc.artifact_location.uri, finding))
        })
        .collect())
}

/// `--format=csv`: no header; name, description, severity, message, path, start line, start
/// column, end line, end column.
fn read_csv(text: &str) -> Result<Vec<(String, Finding)>, OracleError> {
    let bad = |what: String| OracleError::Output { tool: "codeql", what };
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| {
            let r = r.map_err(|e| bad(format!("CSV: {e}")))?;
            if r.len() != 9 {
                return Err(bad(format!("CSV: a row has {} columns, not 9: {r:?}", r.len())));
            }
            let line = r[5]
                .parse()
                .map_err(|_| bad(format!("CSV: start line `{}` is not a number", &r[5])))?;
            let finding = Finding {
                oracle: "codeql".into(),
                rule: r[0].to_string(),
                line,
                message: r[3].to_string(),
            };
            Ok((r[4].to_string(), finding))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of `codeql database analyze --format=sarif-latest` output (SARIF 2.1.0), trimmed.
    const SARIF: &str = r#"{
      "$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
      "runs": [{
        "tool": {"driver": {"name": "CodeQL", "rules": [{"id": "py/sql-injection"}]}},
        "artifacts": [{"location": {"uri": "p3.py", "uriBaseId": "%SRCROOT%", "index": 0}}],
        "results": [{
          "ruleId": "py/sql-injection", "ruleIndex": 0,
          "message": {"text": "This SQL query depends on a [user-provided value](1)."},
          "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": "p3.py", "uriBaseId": "%SRCROOT%", "index": 0},
            "region": {"startLine": 14, "startColumn": 20, "endColumn": 61}}}],
          "partialFingerprints": {"primaryLocationLineHash": "4d2a5c6e8b1f0a93:1"}
        }]
      }]
    }"#;

    // `--format=csv`: the query's name, description, severity, message, path, lines and columns.
    const CSV: &str = "\"SQL query built from user-controlled sources\",\"Building a SQL query from user-controlled sources is vulnerable to insertion of malicious SQL code by the user.\",\"error\",\"This SQL query depends on a [[\"\"user-provided value\"\"|\"\"relative:///p3.py:10:13:10:19\"\"]].\",\"/p3.py\",\"14\",\"20\",\"14\",\"61\"\n";

    #[test]
    fn sarif_results_are_findings_at_their_first_location() {
        let found = read_sarif(SARIF).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "p3.py");
        assert_eq!((found[0].1.rule.as_str(), found[0].1.line), ("py/sql-injection", 14));
    }

    #[test]
    fn csv_rows_are_findings_and_malformed_rows_are_errors() {
        let found = read_csv(CSV).unwrap();
        assert_eq!(found[0].0, "/p3.py");
        assert_eq!((found[0].1.line, found[0].1.oracle.as_str()), (14, "codeql"));
        assert!(found[0].1.message.contains("user-provided value"));
        let err = read_csv("\"a\",\"b\",\"error\"\n").unwrap_err().to_string();
        assert!(err.contains("3 columns, not 9"), "{err}");
        assert!(read_sarif("{\"runs\": 3}").is_err());
    }

    #[test]
    fn results_files_are_read_by_their_extension() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.sarif"), SARIF).unwrap();
        std::fs::write(dir.path().join("r.csv"), CSV).unwrap();
        let sarif = read_results(&dir.path().join("r.sarif")).unwrap();
        let csv = read_results(&dir.path().join("r.csv")).unwrap();
        assert_eq!(sarif[0].1.line, csv[0].1.line);
    }

    #[test]
    fn queries_resolve_to_shipped_files_or_standard_packs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cwe_125_my-1.ql"), "import cpp").unwrap();
        let custom = resolve_query("../data_eval/sec_eval/base/cwe-125/0-c/cwe_125_my-1.ql", dir.path()).unwrap();
        assert!(custom.ends_with("cwe_125_my-1.ql") && custom.starts_with('/'));
        assert_eq!(
            resolve_query(
                "../codeql/codeql-repo/python/ql/src/Security/CWE-022/PathInjection.ql",
                dir.path()
            ),
            Some("codeql/python-queries:Security/CWE-022/PathInjection.ql".into())
        );
        assert_eq!(
            resolve_query("../codeql/codeql-repo/cpp/ql/src/Critical/UseAfterFree.ql", dir.path()),
            Some("codeql/cpp-queries:Critical/UseAfterFree.ql".into())
        );
    }
}
