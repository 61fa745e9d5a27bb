//! gcc's static analyzer (`-fanalyzer`), one compilation per program, in the language the
//! functional tests compile (`-std=c99`, so the same macros are defined and the same code is
//! compiled), with `_Pragma` defined away (see `mute`). It compiles to assembly and stops there:
//! an assembler's messages (`__asm__(".warning ...")`) would mix with the JSON diagnostics. A
//! program it cannot compile is unchecked (the parse check passed it), not free of findings.

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
    /// The analyzer's path to the finding.
    #[serde(default)]
    path: Vec<Event>,
}

#[derive(Deserialize)]
struct Location {
    caret: Caret,
}

#[derive(Deserialize)]
struct Event {
    location: Caret,
}

#[derive(Deserialize)]
struct Caret {
    file: PathBuf,
    line: usize,
}

pub fn run(runner: &ToolRunner, gcc: &str, cwd: &Path, file: &Path) -> Result<Checked, OracleError> {
    let args: Vec<String> = [
        "-fanalyzer",
        "-std=c99",
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
    let stderr = runner.stderr("gcc", gcc, &args, cwd, &[0])?;
    let found = parse(&stderr, file)?;
    Ok(Checked::found(
        found.into_iter().map(|f| (file.to_path_buf(), f)).collect(),
    ))
}

/// The analyzer's findings in `file` itself (not in a header it includes), each at the latest
/// line of its path in `file`: a finding whose path runs through the completion (a helper of the
/// prefix that frees what the completion freed) is the completion's.
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
            let lines = std::iter::once(caret)
                .chain(d.path.iter().map(|e| &e.location))
                .filter(|at| at.file == file)
                .map(|at| at.line);
            lines.max().map(|line| Finding {
                oracle: "gcc-analyzer".into(),
                rule,
                line,
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

    /// A double free reported in a helper of the prefix (line 2) whose path runs through the
    /// completion (lines 4 to 6) is found at the path's latest line in the program.
    #[test]
    fn a_finding_is_at_the_latest_line_of_its_path() {
        let json = r#"[{"kind": "warning", "message": "double-'free' of 'p'", "option": "-Wanalyzer-double-free",
            "locations": [{"caret": {"file": "p0.c", "line": 2, "column": 22}}],
            "path": [{"location": {"file": "p0.c", "line": 4}}, {"location": {"file": "p0.c", "line": 6}},
                     {"location": {"file": "/usr/include/stdlib.h", "line": 40}}, {"location": {"file": "p0.c", "line": 2}}]}]"#;
        let found = super::parse(json, std::path::Path::new("p0.c")).unwrap();
        assert_eq!((found[0].rule.as_str(), found[0].line), ("double-free", 6));
    }
}
