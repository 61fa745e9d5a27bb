//! CodeQL, as CodeGuard+ runs it: one database per scenario over its programs, analysed with the
//! scenario's `check_ql`; results read as CSV. Used only when a `codeql` CLI is on
//! PATH (it cannot be installed on the project's machines, so this path is untested end to end;
//! the CSV reader is tested on CodeQL's documented format).

use std::path::{Path, PathBuf};

use super::{Finding, OracleError, ToolRunner};

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

/// Builds a database of the programs in `dir` and runs `query` on it, in the sandbox (the
/// database lives in its scratch; the results come back on stdout); findings by file.
pub fn run(
    runner: &ToolRunner,
    codeql: &str,
    dir: &Path,
    language: &str,
    query: &str,
) -> Result<Vec<(PathBuf, Finding)>, OracleError> {
    let db = format!("{}/codeql-db", super::super::sandbox::SCRATCH);
    let s = |x: &str| x.to_string();
    // Query packs CodeQL has downloaded live in ~/.codeql.
    let packs: Vec<PathBuf> = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".codeql"))
        .filter(|p| p.is_dir())
        .into_iter()
        .collect();
    let mut create = vec![
        s("database"),
        s("create"),
        db.clone(),
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
    // One sandboxed shell runs both steps, since the database exists only in its scratch.
    let quote = |a: &str| format!("'{}'", a.replace('\'', "'\\''"));
    let analyze = [
        s("database"),
        s("analyze"),
        db,
        s(query),
        s("--format=csv"),
        s("--output=/dev/stdout"),
    ];
    let line = |args: &[String]| {
        std::iter::once(quote(codeql))
            .chain(args.iter().map(|a| quote(a)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let script = format!("{} >&2 && {}", line(&create), line(&analyze));
    let codeql_path =
        crate::toolchain::find(codeql).map_err(|source| OracleError::Missing { tool: "codeql", source })?;
    let mut seen = packs;
    seen.extend(super::installation(&codeql_path));
    let csv = runner.output("codeql", "/bin/sh", &[s("-c"), script], dir, &seen, &[0])?;
    Ok(read_csv(&csv)?
        .into_iter()
        .map(|(uri, f)| (dir.join(uri.trim_start_matches("file://").trim_start_matches('/')), f))
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

    // `--format=csv`: the query's name, description, severity, message, path, lines and columns.
    const CSV: &str = "\"SQL query built from user-controlled sources\",\"Building a SQL query from user-controlled sources is vulnerable to insertion of malicious SQL code by the user.\",\"error\",\"This SQL query depends on a [[\"\"user-provided value\"\"|\"\"relative:///p3.py:10:13:10:19\"\"]].\",\"/p3.py\",\"14\",\"20\",\"14\",\"61\"\n";

    #[test]
    fn csv_rows_are_findings_and_malformed_rows_are_errors() {
        let found = read_csv(CSV).unwrap();
        assert_eq!(found[0].0, "/p3.py");
        assert_eq!((found[0].1.line, found[0].1.oracle.as_str()), (14, "codeql"));
        assert!(found[0].1.message.contains("user-provided value"));
        let err = read_csv("\"a\",\"b\",\"error\"\n").unwrap_err().to_string();
        assert!(err.contains("3 columns, not 9"), "{err}");
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
