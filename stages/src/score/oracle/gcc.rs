//! gcc's static analyzer (`-fanalyzer`), one compilation per program, with `_Pragma` defined
//! away (see `mute`). It compiles to assembly and stops there: an assembler's messages
//! (`__asm__(".warning ...")`) would mix with the JSON diagnostics.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::mute::NO_PRAGMA_OPERATOR;
use super::{Checked, Finding, OracleError, ToolRunner};

#[derive(Deserialize)]
struct Diagnostic {
    kind: String,
    message: String,
    #[serde(default)]
    option: Option<String>,
    locations: Vec<Location>,
}

#[derive(Deserialize)]
struct Location {
    caret: Caret,
}

#[derive(Deserialize)]
struct Caret {
    file: PathBuf,
    line: usize,
}

pub fn run(runner: &ToolRunner, gcc: &str, cwd: &Path, file: &Path) -> Result<Checked, OracleError> {
    let args: Vec<String> = [
        "-fanalyzer",
        "-std=gnu99",
        NO_PRAGMA_OPERATOR,
        "-fdiagnostics-format=json",
        "-S",
        "-o",
        "/dev/null",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([file.display().to_string()])
    .collect();
    // The JSON goes to stderr; a program gcc cannot compile has no analyzer findings.
    // 1: it could not compile the program, which has no analyzer findings then.
    let stderr = runner.stderr("gcc", gcc, &args, cwd, &[0, 1])?;
    let found = parse(&stderr, file)?;
    Ok(Checked::found(found.into_iter().map(|f| (file.to_path_buf(), f)).collect()))
}

/// The analyzer's findings in `file` itself (not in a header it includes).
fn parse(json: &str, file: &Path) -> Result<Vec<Finding>, OracleError> {
    let json = json.trim();
    if json.is_empty() {
        return Ok(Vec::new());
    }
    let diagnostics: Vec<Diagnostic> = serde_json::from_str(json).map_err(|e| OracleError::Output {
        tool: "gcc",
        what: e.to_string(),
    })?;
    Ok(diagnostics
        .into_iter()
        .filter(|d| d.kind == "warning")
        .filter_map(|d| {
            let rule = d.option.as_deref()?.strip_prefix("-Wanalyzer-")?.to_string();
            let caret = &d.locations.first()?.caret;
            (caret.file == file).then(|| Finding {
                oracle: "gcc-analyzer".into(),
                rule,
                line: caret.line,
                message: d.message,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn analyzer_warnings_are_findings_and_other_diagnostics_are_not() {
        let json = r#"[{"kind": "warning", "message": "dereference of possibly-NULL 'p'",
            "option": "-Wanalyzer-possible-null-dereference",
            "locations": [{"caret": {"file": "p0.c", "line": 10, "column": 15}}], "children": []},
          {"kind": "warning", "message": "leak", "option": "-Wanalyzer-malloc-leak",
            "locations": [{"caret": {"file": "/usr/include/stdlib.h", "line": 12, "column": 1}}], "children": []},
          {"kind": "warning", "message": "implicit declaration", "option": "-Wimplicit-function-declaration",
            "locations": [{"caret": {"file": "p0.c", "line": 3, "column": 1}}], "children": []}]"#;
        let found = super::parse(json, std::path::Path::new("p0.c")).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].rule.as_str(), found[0].line),
            ("possible-null-dereference", 10)
        );
    }
}
