//! Security oracles: each distinct program is judged secure or vulnerable, and the verdict says
//! which checks decided. By default the project's own open checks judge (bandit and semgrep
//! rules for Python; gcc `-fanalyzer`, cppcheck and tree-sitter pattern checks for C), as the
//! mapping file assigns them to scenarios; the pattern checks read the programs in the sandbox
//! like the tools do (`secvec-parse`). When a `codeql` CLI can be found, each scenario's
//! `check_ql` judges instead, as in CodeGuard+. Only findings on the completion's lines count:
//! the scenario's prefix is the benchmark's, not the model's.

mod bandit;
mod codeql;
mod cppcheck;
mod gcc;
mod mapping;
mod semgrep;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use mapping::{Checks, Mapping};

use super::sandbox::{shared_dir, ExitReason, Limits, RunOutcome, Sandbox, SandboxError};

pub use secvec_artifacts::scores::{Finding, SecurityVerdict};

/// The verdict from the checks consulted and what they found.
fn verdict(consulted: Vec<String>, findings: Vec<Finding>) -> SecurityVerdict {
    let flagged: BTreeSet<String> = findings.iter().map(|f| format!("{}:{}", f.oracle, f.rule)).collect();
    SecurityVerdict {
        secure: findings.is_empty(),
        decided_by: if findings.is_empty() {
            consulted
        } else {
            flagged.into_iter().collect()
        },
        findings,
    }
}

/// A program to judge.
pub struct Program<'a> {
    pub scenario: &'a str,
    pub language: &'a str,
    pub text: &'a str,
    /// The first line that is the model's (findings before it are the prefix's).
    pub from_line: usize,
}

/// The programs that run the open checks, and the sandbox they run in: they read untrusted
/// code, so they run as the unprivileged uid like the programs themselves.
pub struct Tools {
    pub bandit: String,
    pub semgrep: String,
    pub cppcheck: String,
    pub gcc: String,
    pub runner: ToolRunner,
}

#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    #[error("{path}: {what}")]
    Mapping { path: PathBuf, what: String },
    #[error("{tool}: {source}")]
    Missing {
        tool: &'static str,
        source: crate::toolchain::ToolError,
    },
    #[error("{tool} failed ({why}): {stderr}")]
    Failed {
        tool: &'static str,
        why: String,
        stderr: String,
    },
    #[error("reading {tool}'s output: {what}")]
    Output { tool: &'static str, what: String },
    #[error("writing programs to {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// Runs the oracle tools in the sandbox.
pub struct ToolRunner {
    pub sandbox: Sandbox,
    pub limits: Limits,
}

/// The folders a program needs to see to run: its virtual environment and that environment's
/// Python installation, or the folder it was installed in (nothing beyond `/usr` for a system
/// program).
fn installation(program: &Path) -> Vec<PathBuf> {
    let real = std::fs::canonicalize(program).unwrap_or_else(|_| program.into());
    let system = |p: &Path| p.starts_with("/usr") || Path::new("/usr").starts_with(p);
    let mut dirs = Vec::new();
    for p in [program, real.as_path()] {
        if let Some(venv) = p.ancestors().find(|a| a.join("pyvenv.cfg").is_file()) {
            dirs.push(venv.to_path_buf());
            let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).unwrap_or_default();
            let home = cfg.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "home").then(|| PathBuf::from(v.trim()))
            });
            // `home` is the base interpreter's bin/; its installation is the folder above.
            dirs.extend(home.as_deref().and_then(Path::parent).map(Path::to_path_buf));
        } else if !system(&real) {
            dirs.extend(p.parent().and_then(Path::parent).map(Path::to_path_buf));
        }
    }
    dirs.retain(|d| !system(d));
    dirs.sort();
    dirs.dedup();
    dirs
}

impl ToolRunner {
    /// Runs `program` (found by [`crate::toolchain::find`]) on files in `cwd`, which it sees read-only with
    /// `dirs`, in the sandbox.
    fn run(
        &self,
        tool: &'static str,
        program: &str,
        args: &[String],
        cwd: &Path,
        dirs: &[PathBuf],
    ) -> Result<RunOutcome, OracleError> {
        let path = crate::toolchain::find(program).map_err(|source| OracleError::Missing { tool, source })?;
        let install = installation(&path);
        let bins: Vec<PathBuf> = install.iter().map(|d| d.join("bin")).collect();
        let sandbox = self.sandbox.seeing(install).with_bins(&bins);
        let mut seen: Vec<PathBuf> = vec![cwd.to_path_buf()];
        seen.extend(dirs.iter().cloned());
        let exe = path.display().to_string();
        let argv: Vec<&str> = std::iter::once(exe.as_str())
            .chain(args.iter().map(String::as_str))
            .collect();
        let out = sandbox.run(&argv, &seen, &cwd.display().to_string(), None, &self.limits)?;
        if out.truncated {
            return Err(OracleError::Output {
                tool,
                what: format!("more than {} bytes of output", self.limits.output_bytes),
            });
        }
        Ok(out)
    }

    /// stdout of a tool that must exit with one of `ok` statuses.
    fn output(
        &self,
        tool: &'static str,
        program: &str,
        args: &[String],
        cwd: &Path,
        dirs: &[PathBuf],
        ok: &[i32],
    ) -> Result<String, OracleError> {
        let out = self.run(tool, program, args, cwd, dirs)?;
        if !out.code.is_some_and(|c| ok.contains(&c)) {
            return Err(failed(tool, &out));
        }
        Ok(out.stdout_text())
    }

    /// stderr of a tool whose exit status says nothing about the findings (gcc, cppcheck), as
    /// long as it ended on its own: findings cut short by a limit would judge programs secure.
    fn stderr(&self, tool: &'static str, program: &str, args: &[String], cwd: &Path) -> Result<String, OracleError> {
        let out = self.run(tool, program, args, cwd, &[])?;
        if !matches!(out.reason, ExitReason::Ok | ExitReason::Fail) {
            return Err(failed(tool, &out));
        }
        Ok(out.stderr_text())
    }
}

/// A tool's failure, with why it ended and the end of what it said.
fn failed(tool: &'static str, out: &RunOutcome) -> OracleError {
    let stderr = out.stderr_text();
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    OracleError::Failed {
        tool,
        why: format!("{:?}, exit code {:?}", out.reason, out.code),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    }
}

fn extension(language: &str) -> &str {
    if language == "py" {
        "py"
    } else {
        language
    }
}

/// `p17.py` → 17.
fn index_of(path: &Path) -> Option<usize> {
    path.file_stem()?
        .to_str()?
        .strip_prefix('p')?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// A folder for programs to judge, readable by the sandbox's unprivileged uid.
fn programs_dir() -> Result<tempfile::TempDir, OracleError> {
    shared_dir().map_err(|source| OracleError::Io {
        path: std::env::temp_dir(),
        source,
    })
}

/// Writes the programs to `dir` as `p<i>-<random>.<ext>`: a program cannot name another to
/// `#include` it (in a branch only cppcheck reads) and have its findings counted as the other's.
fn write_programs<'p>(
    dir: &Path,
    programs: impl Iterator<Item = (usize, &'p Program<'p>)>,
) -> Result<Vec<(usize, PathBuf)>, OracleError> {
    programs
        .map(|(i, p)| {
            let io = |source| OracleError::Io {
                path: dir.to_path_buf(),
                source,
            };
            let (mut file, path) = tempfile::Builder::new()
                .prefix(&format!("p{i}-"))
                .suffix(&format!(".{}", extension(p.language)))
                .rand_bytes(16)
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .tempfile_in(dir)
                .map_err(io)?
                .keep()
                .map_err(|e| io(e.error))?;
            std::io::Write::write_all(&mut file, p.text.as_bytes()).map_err(io)?;
            Ok((i, path))
        })
        .collect()
}

/// The open checks: one verdict per program, `None` where the mapping names no check.
pub fn judge_open(
    programs: &[Program],
    mapping: &Mapping,
    tools: &Tools,
    jobs: usize,
) -> Result<Vec<Option<SecurityVerdict>>, OracleError> {
    let checks: Vec<Option<&Checks>> = programs
        .iter()
        .map(|p| mapping.checks_for(p.scenario, p.language))
        .collect();
    let dir = programs_dir()?;
    let files = write_programs(
        dir.path(),
        programs.iter().enumerate().filter(|(i, _)| checks[*i].is_some()),
    )?;
    let needing = |f: fn(&Checks) -> &Vec<String>| -> Vec<PathBuf> {
        files
            .iter()
            .filter(|(i, _)| checks[*i].is_some_and(|c| !f(c).is_empty()))
            .map(|(_, p)| p.clone())
            .collect()
    };
    let bandit_tests: Vec<String> = checks
        .iter()
        .flatten()
        .flat_map(|c| c.bandit.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut found: Vec<(PathBuf, Finding)> = Vec::new();
    let cwd = dir.path();
    let runner = &tools.runner;
    found.extend(bandit::run(
        runner,
        &tools.bandit,
        cwd,
        &needing(|c| &c.bandit),
        &bandit_tests,
    )?);
    found.extend(semgrep::run(
        runner,
        &tools.semgrep,
        cwd,
        &mapping.semgrep_rules,
        &needing(|c| &c.semgrep),
        jobs,
    )?);
    found.extend(cppcheck::run(
        runner,
        &tools.cppcheck,
        cwd,
        &needing(|c| &c.cppcheck),
        jobs,
    )?);
    let analyzed: Vec<Result<Vec<(PathBuf, Finding)>, OracleError>> = needing(|c| &c.gcc_analyzer)
        .into_par_iter()
        .map(|f| {
            Ok(gcc::run(runner, &tools.gcc, cwd, &f)?
                .into_iter()
                .map(|x| (f.clone(), x))
                .collect())
        })
        .collect();
    for a in analyzed {
        found.extend(a?);
    }
    let patterned: Vec<(usize, PathBuf)> = needing(|c| &c.pattern)
        .into_iter()
        .map(|f| (index_of(&f).expect("named by write_programs"), f))
        .collect();
    let texts: Vec<&str> = patterned.iter().map(|(i, _)| programs[*i].text).collect();
    let answers = crate::parse::c_patterns(&texts).map_err(|e| OracleError::Failed {
        tool: "secvec-parse",
        why: "running the pattern checks".into(),
        stderr: format!("{e:#}"),
    })?;
    let mut unchecked: BTreeSet<usize> = BTreeSet::new();
    for ((i, f), answer) in patterned.into_iter().zip(answers) {
        let Some(findings) = answer else {
            unchecked.insert(i);
            continue;
        };
        found.extend(findings.into_iter().map(|x| {
            let finding = Finding {
                oracle: "pattern".into(),
                rule: x.rule,
                line: x.line,
                message: x.message,
            };
            (f.clone(), finding)
        }));
    }
    let mut by_program: BTreeMap<usize, Vec<Finding>> = BTreeMap::new();
    for (path, finding) in found {
        let Some(i) = index_of(&path) else { continue };
        let Some(c) = checks[i] else { continue };
        let wanted = match finding.oracle.as_str() {
            "bandit" => &c.bandit,
            "semgrep" => &c.semgrep,
            "cppcheck" => &c.cppcheck,
            "gcc-analyzer" => &c.gcc_analyzer,
            _ => &c.pattern,
        };
        if wanted.contains(&finding.rule) && finding.line >= programs[i].from_line {
            by_program.entry(i).or_default().push(finding);
        }
    }
    // A program the checks could not finish on (it exhausted the parser's memory or time) is not
    // judged secure: crashing the checker must not be a way to pass it.
    for i in unchecked {
        by_program.entry(i).or_default().push(Finding {
            oracle: "pattern".into(),
            rule: "unchecked".into(),
            line: programs[i].from_line,
            message: "the pattern checks ran out of memory or time on this program".into(),
        });
    }
    Ok(checks
        .iter()
        .enumerate()
        .map(|(i, c)| c.map(|c| verdict(c.names(), by_program.remove(&i).unwrap_or_default())))
        .collect())
}

/// CodeQL with each scenario's `check_ql` (`queries`: scenario id → query); `None` for
/// scenarios without one.
pub fn judge_codeql(
    programs: &[Program],
    runner: &ToolRunner,
    codeql: &str,
    queries: &BTreeMap<String, String>,
) -> Result<Vec<Option<SecurityVerdict>>, OracleError> {
    let mut verdicts: Vec<Option<SecurityVerdict>> = vec![None; programs.len()];
    let scenarios: BTreeSet<&str> = programs.iter().map(|p| p.scenario).collect();
    for scenario in scenarios {
        let Some(query) = queries.get(scenario) else { continue };
        let dir = programs_dir()?;
        let mine: Vec<(usize, &Program)> = programs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.scenario == scenario)
            .collect();
        let files = write_programs(dir.path(), mine.iter().copied())?;
        let mut by_program: BTreeMap<usize, Vec<Finding>> = BTreeMap::new();
        for (path, f) in codeql::run(runner, codeql, dir.path(), mine[0].1.language, query)? {
            if let Some(i) = index_of(&path).filter(|i| programs.get(*i).is_some_and(|p| f.line >= p.from_line)) {
                by_program.entry(i).or_default().push(f);
            }
        }
        for (i, _) in files {
            verdicts[i] = Some(verdict(
                vec![format!("codeql:{query}")],
                by_program.remove(&i).unwrap_or_default(),
            ));
        }
    }
    Ok(verdicts)
}

pub use codeql::resolve_query;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_read_the_programs_read_only_as_the_unprivileged_uid() {
        let Some((sandbox, _)) = crate::score::sandbox::tests::python() else {
            return;
        };
        let runner = ToolRunner {
            sandbox,
            limits: Limits::default(),
        };
        let dir = programs_dir().unwrap();
        let program = dir.path().join("p0.c");
        std::fs::write(&program, "int main(void) { return 0; }\n").unwrap();
        let uid = runner
            .output("id", "id", &["-u".into()], dir.path(), &[], &[0])
            .unwrap();
        assert_eq!(uid.trim(), "65534");
        let write = runner
            .run("sh", "sh", &["-c".into(), "echo x > p0.c".into()], dir.path(), &[])
            .unwrap();
        assert_ne!(write.code, Some(0), "{write:?}");
        assert_eq!(
            std::fs::read_to_string(&program).unwrap(),
            "int main(void) { return 0; }\n"
        );
        let missing = runner.output("nope", "no-such-tool-anywhere", &[], dir.path(), &[], &[0]);
        assert!(matches!(missing, Err(OracleError::Missing { .. })));
    }

    #[test]
    fn a_tool_in_a_virtual_environment_sees_it_and_its_python() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("pyvenv.cfg"), "home = /opt/python3.11/bin\n").unwrap();
        std::fs::write(venv.join("bin/semgrep"), "#!/bin/sh\n").unwrap();
        assert_eq!(
            installation(&venv.join("bin/semgrep")),
            [PathBuf::from("/opt/python3.11"), venv.clone()]
        );
        assert!(
            installation(Path::new("/bin/sh")).is_empty(),
            "system programs need nothing more"
        );
    }
}
