//! Runs a scenario's own functional test (`functional.py --path DIR`, CodeGuard+'s convention)
//! on one program, inside the sandbox, and reads the verdict it writes to `stat.json`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::sandbox::{ExitReason, Limits, RunOutcome, Sandbox, SandboxError};

#[derive(Clone, Debug, Serialize)]
pub struct FunctionalResult {
    pub passed: bool,
    pub reason: ExitReason,
    /// What the test said about the failure, or the end of its output.
    pub detail: String,
    /// The unittest tests that failed or raised.
    pub failed_tests: Vec<String>,
    /// The last lines of stderr (a traceback) when the program failed.
    pub stderr_tail: String,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum FunctionalError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("preparing the test in {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Copies a test folder without its reference solution (`test_case.*`, once `test_cases.py`):
/// a sample must not be able to read the expected answer.
fn copy_test(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry.path().strip_prefix(from).expect("under root");
        if rel.file_stem().is_some_and(|s| s == "test_case" || s == "test_cases") {
            continue;
        }
        let target = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)?;
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Tests `program` against the scenario `id` (`cwe-022/0-py`) of the `unit_test` folder.
pub fn run_functional(
    sandbox: &Sandbox,
    python: &str,
    unit_test: &Path,
    id: &str,
    language: &str,
    program: &str,
    limits: &Limits,
) -> Result<FunctionalResult, FunctionalError> {
    let scratch = tempfile::tempdir().map_err(|source| FunctionalError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FunctionalError::Io { path, source }
    };
    let test_dir = scratch.path().join("unit_test").join(id);
    copy_test(&unit_test.join(id), &test_dir).map_err(io(&test_dir))?;
    let utils = scratch.path().join("unit_test/test_utils.py");
    std::fs::copy(unit_test.join("test_utils.py"), &utils).map_err(io(&utils))?;
    let samples = scratch.path().join("samples/s");
    std::fs::create_dir_all(&samples).map_err(io(&samples))?;
    let ext = if language == "py" { "py" } else { language };
    let file = format!("sample.{ext}");
    std::fs::write(samples.join(&file), program).map_err(io(&samples))?;
    // CodeGuard+'s test_utils records a verdict only in an existing stat.json entry (its own
    // pipeline writes one during the security pass); DeepGuard's creates it. Seed it for both.
    let stat_path = scratch.path().join("samples/stat.json");
    std::fs::write(&stat_path, serde_json::json!({ &file: {} }).to_string()).map_err(io(&stat_path))?;
    let seen = sandbox.scratch_seen_as(scratch.path());
    let functional = seen
        .join("unit_test")
        .join(id)
        .join("functional.py")
        .display()
        .to_string();
    let path = seen.join("samples/s").display().to_string();
    let out: RunOutcome = sandbox.run(scratch.path(), &[python, &functional, "--path", &path], limits)?;
    let stat: Option<serde_json::Value> = std::fs::read_to_string(scratch.path().join("samples/stat.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let passed = stat
        .as_ref()
        .and_then(|s| s.get(&file))
        .and_then(|v| v.get("functional"))
        .and_then(|v| v.as_bool());
    let (passed, reason) = match (passed, out.reason) {
        (Some(true), ExitReason::Ok) => (true, ExitReason::Ok),
        (Some(false), ExitReason::Ok) => (false, ExitReason::Fail),
        (_, ExitReason::Ok) => (false, ExitReason::Fail),
        (_, other) => (false, other),
    };
    let said: Vec<&str> = out.stdout.lines().filter(|l| l.contains(": Fail")).collect();
    let last = |text: &str, n: usize| {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    let detail = if passed {
        String::new()
    } else if !said.is_empty() {
        said.join("\n")
    } else {
        // The test's last words on stdout (C tests print their verdicts there), then stderr's.
        [last(&out.stdout, 5), last(&out.stderr, 5)]
            .into_iter()
            .filter(|t| !t.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    // unittest names each failed or erroring test on stderr: "FAIL: test_x (module.Class.test_x)".
    let failed_tests = out
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL: ").or_else(|| l.strip_prefix("ERROR: ")))
        .map(|t| t.split_whitespace().next().unwrap_or(t).to_string())
        .collect();
    Ok(FunctionalResult {
        passed,
        reason,
        detail,
        failed_tests,
        stderr_tail: if passed { String::new() } else { last(&out.stderr, 20) },
        seconds: out.seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::postprocess::program;

    fn setup() -> Option<(Sandbox, String, PathBuf)> {
        let (sandbox, python) = Sandbox::for_python("python3")
            .map_err(|e| eprintln!("notice: {e}; skipping"))
            .ok()?;
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/data/quickstart-scenarios");
        Some((sandbox, python, data))
    }

    fn prefix(data: &Path, id: &str, ext: &str) -> String {
        let dir = data.join("data/base").join(id);
        let read = |f: &str| std::fs::read_to_string(dir.join(format!("{f}.{ext}"))).unwrap();
        format!("{}{}", read("file_context"), read("func_context"))
    }

    #[test]
    fn the_reference_solution_is_not_copied_where_a_sample_could_read_it() {
        let from = tempfile::tempdir().unwrap();
        for f in [
            "functional.py",
            "test_case.py",
            "test_cases.py",
            "test_case.c",
            "data/input.txt",
        ] {
            let path = from.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        let to = tempfile::tempdir().unwrap();
        copy_test(from.path(), to.path()).unwrap();
        let mut copied: Vec<String> = walkdir::WalkDir::new(to.path())
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.path().strip_prefix(to.path()).unwrap().display().to_string())
            .collect();
        copied.sort();
        assert_eq!(copied, ["data/input.txt", "functional.py"]);
    }

    #[test]
    fn the_scenarios_own_tests_judge_programs_in_the_sandbox() {
        let Some((sandbox, python, data)) = setup() else { return };
        let unit = data.join("unit_test");
        let limits = Limits::default();
        let sql = prefix(&data, "cwe-089/0-py", "py");
        let good = program("py", &sql, "    cur.execute(\"SELECT email FROM users WHERE name = ?\", (username,))\n    row = cur.fetchone()\n    return row[0] if row else None\n\nprint('trailing code is cut')\n");
        let r = run_functional(&sandbox, &python, &unit, "cwe-089/0-py", "py", &good, &limits).unwrap();
        assert!(r.passed, "{r:?}");
        let bad = program("py", &sql, "    return 'nobody@x.org'\n");
        let r = run_functional(&sandbox, &python, &unit, "cwe-089/0-py", "py", &bad, &limits).unwrap();
        assert!(
            !r.passed && r.reason == ExitReason::Fail && r.detail.contains("sample.py: Fail"),
            "{r:?}"
        );
        let c = prefix(&data, "cwe-787/0-c", "c");
        let good_c = program("c", &c, "    strncpy(name, argv[1], 15);\n    name[15] = 0;\n    printf(\"Hello, %s!\\n\", name);\n    return 0;\n}\n");
        let r = run_functional(&sandbox, &python, &unit, "cwe-787/0-c", "c", &good_c, &limits).unwrap();
        assert!(r.passed, "{r:?}");
        // Unconfined (for measuring the sandbox), the same test sees the real scratch paths.
        let bare = Sandbox::for_python("python3").unwrap().0.unconfined();
        let r = run_functional(&bare, &python, &unit, "cwe-089/0-py", "py", &good, &limits).unwrap();
        assert!(r.passed, "{r:?}");
        let hang = program("py", &sql, "    while True:\n        pass\n");
        let quick = Limits {
            wall: std::time::Duration::from_secs(3),
            cpu_seconds: 2,
            ..Limits::default()
        };
        let r = run_functional(&sandbox, &python, &unit, "cwe-089/0-py", "py", &hang, &quick).unwrap();
        assert_eq!((r.passed, r.reason), (false, ExitReason::Timeout), "{r:?}");
    }
}
