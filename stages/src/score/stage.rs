//! `score`: judges generated completions of scenarios — cut at the end of the function, parse
//! checked, de-duplicated, and run against each scenario's own functional test in the sandbox —
//! and computes the metrics. Security oracles join in the next step; until then every
//! security field is absent and only functional metrics are reported.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rayon::prelude::*;
use schemars::JsonSchema;
use secvec_engine::{InputSlot, Stage, StageContext, FILES};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::functional::run_functional;
use super::metrics::{at_least_one, Counts, Judged};
use super::postprocess::program;
use super::sandbox::{ExitReason, Limits, Sandbox};

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreParams {
    /// Sample budgets k of pass@k.
    #[serde(default = "d_k")]
    pub k: Vec<usize>,
    /// Tests run at once (0: one per core).
    #[serde(default)]
    pub jobs: usize,
    /// Wall-clock limit of one test, seconds.
    #[serde(default = "d_timeout")]
    pub timeout_seconds: u64,
    #[serde(default = "d_memory")]
    pub memory_mb: u64,
    /// The Python that runs the tests (with their packages: see scripts/setup.sh).
    #[serde(default = "d_python")]
    pub python: String,
}

fn d_k() -> Vec<usize> {
    vec![1]
}
fn d_timeout() -> u64 {
    20
}
fn d_memory() -> u64 {
    2048
}
fn d_python() -> String {
    "python3".into()
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("{path}:{line}: {what}")]
    BadLine { path: PathBuf, line: usize, what: String },
    #[error("samples name scenario `{0}`, which the scenarios input does not have")]
    UnknownScenario(String),
}

/// The verdict on one distinct program of a scenario, as `judged.jsonl` records it.
#[derive(Serialize)]
struct JudgedProgram<'a> {
    scenario: &'a str,
    /// How many samples were this program.
    count: usize,
    valid: bool,
    functional: bool,
    reason: ExitReason,
    detail: String,
    seconds: f64,
    program: &'a str,
}

#[derive(Deserialize)]
struct ScenarioLine {
    id: String,
    set: String,
    cwe: String,
    language: String,
    prefix: String,
}

#[derive(Deserialize)]
struct SampleLine {
    prompt_id: serde_json::Value,
    /// A completion of the scenario's prefix.
    #[serde(default)]
    text: String,
    /// A whole program, used as it is (e.g. a reference solution).
    #[serde(default)]
    program: Option<String>,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                ScoreError::BadLine {
                    path: path.into(),
                    line: i + 1,
                    what: e.to_string(),
                }
                .into()
            })
        })
        .collect()
}

/// Which programs parse: Python's own `ast` for Python (nothing is executed), gcc's syntax
/// check for C.
fn parses(python: &str, language: &str, program: &str) -> bool {
    let (prog, args): (&str, Vec<&str>) = match language {
        "py" => (python, vec!["-c", "import ast, sys; ast.parse(sys.stdin.read())"]),
        "cpp" => ("g++", vec!["-fsyntax-only", "-x", "c++", "-"]),
        _ => ("gcc", vec!["-std=c99", "-fsyntax-only", "-x", "c", "-"]),
    };
    let Ok(mut child) = Command::new(prog)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let _ = child.stdin.take().expect("piped").write_all(program.as_bytes());
    child.wait().is_ok_and(|s| s.success())
}

pub struct Score;

impl Stage for Score {
    type Params = ScoreParams;
    const KIND: &'static str = "score";
    const VERSION: u32 = 3;
    const DESCRIPTION: &'static str =
        "Runs each scenario's functional tests on generated code in a sandbox and computes pass@k.";

    fn inputs() -> Vec<InputSlot> {
        vec![
            InputSlot {
                name: "scenarios",
                accepts: &["scenarios"],
                many: false,
                optional: false,
                doc: "a `scenarios` stage",
            },
            InputSlot {
                name: "samples",
                accepts: &["samples", FILES],
                many: false,
                optional: false,
                doc: "a `generate` stage over those scenarios, or a JSONL of {prompt_id, text}",
            },
        ]
    }

    fn output_tags() -> Vec<&'static str> {
        vec!["scores", "results"]
    }

    fn run(&self, p: &ScoreParams, ctx: &StageContext) -> anyhow::Result<()> {
        let scenarios_dir = &ctx.input("scenarios").expect("required").path;
        let scenarios: Vec<ScenarioLine> = read_jsonl(&scenarios_dir.join("prompts.jsonl"))?;
        let by_id: HashMap<&str, &ScenarioLine> = scenarios.iter().map(|s| (s.id.as_str(), s)).collect();
        let samples_path = &ctx.input("samples").expect("required").path;
        let samples_path = if samples_path.is_dir() {
            samples_path.join("samples.jsonl")
        } else {
            samples_path.clone()
        };
        let samples: Vec<SampleLine> = read_jsonl(&samples_path)?;
        // Distinct programs per scenario, with how many samples each stands for.
        let mut programs: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for s in &samples {
            let id = s
                .prompt_id
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| s.prompt_id.to_string());
            let sc = by_id
                .get(id.as_str())
                .ok_or_else(|| ScoreError::UnknownScenario(id.clone()))?;
            let prog = s
                .program
                .clone()
                .unwrap_or_else(|| program(&sc.language, &sc.prefix, &s.text));
            *programs.entry(id).or_default().entry(prog).or_default() += 1;
        }
        let (sandbox, python) = Sandbox::for_python(&p.python)?;
        let limits = Limits {
            wall: Duration::from_secs(p.timeout_seconds),
            cpu_seconds: p.timeout_seconds,
            memory_bytes: p.memory_mb << 20,
            ..Limits::default()
        };
        let unit_test = scenarios_dir.join("unit_test");
        let work: Vec<(&str, &str, usize)> = programs
            .iter()
            .flat_map(|(id, progs)| progs.iter().map(move |(prog, n)| (id.as_str(), prog.as_str(), *n)))
            .collect();
        let total = work.len() as u64;
        let done = std::sync::atomic::AtomicU64::new(0);
        let jobs = if p.jobs == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            p.jobs
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs).build()?;
        let judged: Vec<anyhow::Result<JudgedProgram>> = pool.install(|| {
            work.par_iter()
                .map(|&(id, prog, count)| {
                    ctx.check_cancelled()?;
                    let sc = by_id[id];
                    let valid = parses(&python, &sc.language, prog);
                    let result = if valid {
                        Some(run_functional(
                            &sandbox,
                            &python,
                            &unit_test,
                            id,
                            &sc.language,
                            prog,
                            &limits,
                        )?)
                    } else {
                        None
                    };
                    ctx.progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
                    Ok(JudgedProgram {
                        scenario: id,
                        count,
                        valid,
                        functional: result.as_ref().is_some_and(|r| r.passed),
                        reason: result.as_ref().map(|r| r.reason).unwrap_or(ExitReason::Fail),
                        detail: result
                            .as_ref()
                            .map(|r| r.detail.clone())
                            .unwrap_or_else(|| "does not parse".into()),
                        seconds: result.as_ref().map(|r| r.seconds).unwrap_or(0.0),
                        program: prog,
                    })
                })
                .collect()
        });
        let judged: Vec<JudgedProgram> = judged.into_iter().collect::<anyhow::Result<_>>()?;
        let mut lines = String::new();
        let mut per_scenario: BTreeMap<&str, Vec<Judged>> = BTreeMap::new();
        for j in &judged {
            lines.push_str(&serde_json::to_string(j)?);
            lines.push('\n');
            // No security oracle yet: `secure` is not reported on, only carried.
            per_scenario.entry(j.scenario).or_default().push(Judged {
                count: j.count,
                valid: j.valid,
                functional: j.functional,
                secure: false,
            });
        }
        ctx.write("judged.jsonl", lines)?;
        let rows: Vec<serde_json::Value> = per_scenario
            .iter()
            .map(|(id, judged)| {
                let sc = by_id[id];
                let c = Counts::of(judged);
                let mut row = json!({"scenario": id, "set": sc.set, "cwe": sc.cwe, "language": sc.language,
                                     "n": c.n, "functional": c.c, "valid": c.r, "distinct": judged.len()});
                for &k in &p.k {
                    let v = if c.n >= k {
                        Some(at_least_one(c.n, c.c, k))
                    } else {
                        None
                    };
                    row[format!("pass@{k}")] = json!(v);
                }
                row
            })
            .collect();
        ctx.write("results.json", serde_json::to_vec_pretty(&json!({"rows": rows}))?)?;
        Ok(())
    }
}
