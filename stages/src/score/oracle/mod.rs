//! Security oracles: each distinct program is judged secure or vulnerable, and the verdict says
//! which checks decided. By default the project's own open checks judge (bandit and semgrep
//! rules for Python; gcc `-fanalyzer`, cppcheck and tree-sitter pattern checks for C), as the
//! mapping file assigns them to scenarios; when a `codeql` CLI is on PATH, each scenario's
//! `check_ql` judges instead, as in CodeGuard+. Only findings on the completion's lines count:
//! the scenario's prefix is the benchmark's, not the model's.

mod bandit;
pub mod c_patterns;
mod codeql;
mod cppcheck;
mod gcc;
mod mapping;
mod semgrep;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use rayon::prelude::*;
use serde::Serialize;

pub use mapping::{Checks, Mapping};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub oracle: String,
    pub rule: String,
    pub line: usize,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SecurityVerdict {
    pub secure: bool,
    /// The checks that decided (`semgrep:sql-injection`): those that flagged the program, or
    /// every check consulted when none did.
    pub decided_by: Vec<String>,
    pub findings: Vec<Finding>,
}

impl SecurityVerdict {
    fn of(consulted: Vec<String>, findings: Vec<Finding>) -> SecurityVerdict {
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
}

/// A program to judge.
pub struct Program<'a> {
    pub scenario: &'a str,
    pub language: &'a str,
    pub text: &'a str,
    /// The first line that is the model's (findings before it are the prefix's).
    pub from_line: usize,
}

/// The programs that run the open checks.
pub struct Tools {
    pub bandit: String,
    pub semgrep: String,
    pub cppcheck: String,
    pub gcc: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    #[error("{path}: {what}")]
    Mapping { path: PathBuf, what: String },
    #[error("{tool} (`{program}`) cannot be run: scripts/setup.sh installs it and scripts/env.sh puts it on PATH")]
    Missing {
        tool: &'static str,
        program: String,
        source: std::io::Error,
    },
    #[error("{tool} failed with {status}: {stderr}")]
    Failed {
        tool: &'static str,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("reading {tool}'s output: {what}")]
    Output { tool: &'static str, what: String },
    #[error("writing programs to {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Runs a tool in `cwd`, the folder of the programs it judges: semgrep, for one, becomes some 30×
/// slower when started inside a git checkout.
fn run(tool: &'static str, program: &str, args: &[String], cwd: &Path) -> Result<std::process::Output, OracleError> {
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("SEMGREP_SEND_METRICS", "off")
        .output()
        .map_err(|source| OracleError::Missing {
            tool,
            program: program.into(),
            source,
        })
}

/// stdout of a tool that must exit with one of `ok` statuses.
fn tool_output(
    tool: &'static str,
    program: &str,
    args: &[String],
    cwd: &Path,
    ok: &[i32],
) -> Result<String, OracleError> {
    let out = run(tool, program, args, cwd)?;
    if !out.status.code().is_some_and(|c| ok.contains(&c)) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(OracleError::Failed {
            tool,
            status: out.status,
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// stderr of a tool whose exit status says nothing about the findings (gcc, cppcheck).
fn tool_stderr(tool: &'static str, program: &str, args: &[String], cwd: &Path) -> Result<String, OracleError> {
    Ok(String::from_utf8_lossy(&run(tool, program, args, cwd)?.stderr).into_owned())
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
    path.file_stem()?.to_str()?.strip_prefix('p')?.parse().ok()
}

/// Writes the programs to `dir` as `p<i>.<ext>`.
fn write_programs<'p>(
    dir: &Path,
    programs: impl Iterator<Item = (usize, &'p Program<'p>)>,
) -> Result<Vec<(usize, PathBuf)>, OracleError> {
    programs
        .map(|(i, p)| {
            let path = dir.join(format!("p{i}.{}", extension(p.language)));
            std::fs::write(&path, p.text).map_err(|source| OracleError::Io {
                path: path.clone(),
                source,
            })?;
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
    let dir = tempfile::tempdir().map_err(|source| OracleError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
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
    found.extend(bandit::run(&tools.bandit, cwd, &needing(|c| &c.bandit), &bandit_tests)?);
    found.extend(semgrep::run(
        &tools.semgrep,
        cwd,
        &mapping.semgrep_rules,
        &needing(|c| &c.semgrep),
        jobs,
    )?);
    found.extend(cppcheck::run(&tools.cppcheck, cwd, &needing(|c| &c.cppcheck), jobs)?);
    let analyzed: Vec<Result<Vec<(PathBuf, Finding)>, OracleError>> = needing(|c| &c.gcc_analyzer)
        .into_par_iter()
        .map(|f| {
            Ok(gcc::run(&tools.gcc, cwd, &f)?
                .into_iter()
                .map(|x| (f.clone(), x))
                .collect())
        })
        .collect();
    for a in analyzed {
        found.extend(a?);
    }
    for f in needing(|c| &c.pattern) {
        let i = index_of(&f).expect("named by write_programs");
        found.extend(c_patterns::check(programs[i].text).into_iter().map(|x| (f.clone(), x)));
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
    Ok(checks
        .iter()
        .enumerate()
        .map(|(i, c)| c.map(|c| SecurityVerdict::of(c.names(), by_program.remove(&i).unwrap_or_default())))
        .collect())
}

/// CodeQL with each scenario's `check_ql` (`queries`: scenario id → query); `None` for
/// scenarios without one.
pub fn judge_codeql(
    programs: &[Program],
    codeql: &str,
    queries: &BTreeMap<String, String>,
) -> Result<Vec<Option<SecurityVerdict>>, OracleError> {
    let mut verdicts: Vec<Option<SecurityVerdict>> = vec![None; programs.len()];
    let scenarios: BTreeSet<&str> = programs.iter().map(|p| p.scenario).collect();
    for scenario in scenarios {
        let Some(query) = queries.get(scenario) else { continue };
        let dir = tempfile::tempdir().map_err(|source| OracleError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let mine: Vec<(usize, &Program)> = programs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.scenario == scenario)
            .collect();
        let files = write_programs(dir.path(), mine.iter().copied())?;
        let mut by_program: BTreeMap<usize, Vec<Finding>> = BTreeMap::new();
        for (path, f) in codeql::run(codeql, dir.path(), mine[0].1.language, query)? {
            if let Some(i) = index_of(&path).filter(|i| programs.get(*i).is_some_and(|p| f.line >= p.from_line)) {
                by_program.entry(i).or_default().push(f);
            }
        }
        for (i, _) in files {
            verdicts[i] = Some(SecurityVerdict::of(
                vec![format!("codeql:{query}")],
                by_program.remove(&i).unwrap_or_default(),
            ));
        }
    }
    Ok(verdicts)
}

pub use codeql::resolve_query;
