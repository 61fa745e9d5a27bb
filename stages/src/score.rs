//! `score`: judges generated completions of scenarios — cut at the end of the function, parse
//! checked, de-duplicated, run against each scenario's own functional test in the sandbox, and
//! judged secure or vulnerable by the security oracles — and computes the joint metrics per
//! scenario and averaged over each set.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rayon::prelude::*;
use schemars::JsonSchema;
use secvec_artifacts::prompts::Scenario;
use secvec_artifacts::results::{self, Results};
use secvec_artifacts::scores::{self, JudgedProgram};
use secvec_artifacts::{samples, scenarios};
use secvec_stage::{InputSlot, ParamError, ResultFields, Stage, StageContext, Upstreams, FILES};
use serde::{Deserialize, Serialize};
use serde_json::json;

use secvec_score::bootstrap::Bootstrap;
use secvec_score::canary;
use secvec_score::functional::{test_programs, Job};
use secvec_score::metrics::{set_means, Counts, Judged, ScenarioMetrics};
use secvec_score::oracle::{self, Mapping, Program, SecurityVerdict, ToolRunner, Tools};
use secvec_score::parse_check::parses;
use secvec_score::postprocess::program;
use secvec_score::sandbox::{ExitReason, Limits, Sandbox};
use secvec_score::toolchain;
use secvec_score::zygote::{FunctionalResult, ScenarioTest};

use crate::input_file::input_file;
use crate::interval;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreParams {
    /// Sample budgets k of pass@k.
    #[serde(default = "d_k")]
    pub k: Vec<usize>,
    /// Tests run at once (0: two per core, since some tests sleep).
    #[serde(default)]
    pub jobs: usize,
    /// Wall-clock limit of one test, seconds.
    #[serde(default = "d_timeout")]
    pub timeout_seconds: u64,
    #[serde(default = "d_memory")]
    pub memory_mb: u64,
    /// A program longer than this (bytes) is judged not valid without being run or read by any
    /// tool (completions are a few kilobytes; a huge one would only cost the scorer).
    #[serde(default = "d_max_program_bytes")]
    pub max_program_bytes: usize,
    /// The Python that runs the tests (with their packages: see scripts/setup.sh); a bare name
    /// is found in the project's environments first (see `secvec doctor`).
    #[serde(default = "d_python")]
    pub python: String,
    /// Which security oracle judges.
    #[serde(default)]
    pub security: SecurityMode,
    #[serde(default = "d_bandit")]
    pub bandit: String,
    #[serde(default = "d_semgrep")]
    pub semgrep: String,
    #[serde(default = "d_cppcheck")]
    pub cppcheck: String,
    #[serde(default = "d_gcc")]
    pub gcc: String,
    #[serde(default = "d_codeql")]
    pub codeql: String,
    /// Bootstrap resamples behind each metric's 95% interval (`<metric>_lo`, `<metric>_hi`): a
    /// set's resample its scenarios and then their samples, a scenario's its samples.
    #[serde(default = "interval::d_bootstrap")]
    pub bootstrap: usize,
    /// The intervals' confidence level.
    #[serde(default = "interval::d_confidence")]
    pub confidence: f64,
    /// Seed of the resampling: the intervals are the same on every run.
    #[serde(default)]
    pub bootstrap_seed: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    /// CodeQL with each scenario's `check_ql` when `codeql` can be found, else the open checks of
    /// the `oracles` input; no security verdicts when there is neither.
    #[default]
    Auto,
    /// The open checks of the `oracles` input (bandit, semgrep, gcc -fanalyzer, cppcheck,
    /// tree-sitter patterns).
    Open,
    /// CodeQL only (fails when `codeql` cannot be found).
    Codeql,
    /// Functional tests only.
    Off,
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
fn d_max_program_bytes() -> usize {
    1 << 20
}
fn d_python() -> String {
    "python3".into()
}
fn d_bandit() -> String {
    "bandit".into()
}
fn d_semgrep() -> String {
    "semgrep".into()
}
fn d_cppcheck() -> String {
    "cppcheck".into()
}
fn d_gcc() -> String {
    "gcc".into()
}
fn d_codeql() -> String {
    "codeql".into()
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("samples name scenario `{0}`, which the scenarios input does not have")]
    UnknownScenario(String),
    #[error("security: open needs the `oracles` input (a folder with mapping.yaml, e.g. manifests/oracles)")]
    NoOracles,
    #[error("security: codeql, but `{0}` cannot be found: {1}")]
    NoCodeql(String, toolchain::ToolError),
}

pub struct Score;

impl Stage for Score {
    type Params = ScoreParams;
    const KIND: &'static str = "score";
    const VERSION: u32 = 11;
    const SPEED_PARAMS: &'static [&'static str] = &["jobs"];
    const DESCRIPTION: &'static str =
        "Runs each scenario's functional tests on generated code in a sandbox, judges its \
         security with the oracles, and computes pass@k, sec-pass@k, sec@k_pass, SVEN-SR and SecureRate.";

    fn inputs() -> Vec<InputSlot> {
        vec![
            InputSlot {
                name: "scenarios",
                accepts: &[scenarios::TAG],
                many: false,
                optional: false,
                doc: "a `scenarios` stage",
            },
            InputSlot {
                name: "samples",
                accepts: &[samples::TAG, FILES],
                many: false,
                optional: false,
                doc: "a `generate` stage over those scenarios, or a JSONL of {prompt_id, text}",
            },
            InputSlot {
                name: "oracles",
                accepts: &[FILES],
                many: false,
                optional: true,
                doc: "the open security checks: a folder with mapping.yaml and semgrep/ rules (manifests/oracles)",
            },
        ]
    }

    fn output_tags() -> Vec<&'static str> {
        vec![scores::TAG, results::TAG]
    }

    fn check(p: &ScoreParams, _: &Upstreams) -> Result<(), ParamError> {
        interval::check(p.bootstrap, p.confidence)
    }

    fn result_fields(p: &ScoreParams) -> Option<ResultFields> {
        let metrics = |mut fields: Vec<String>| {
            let mut names = Vec::new();
            for k in &p.k {
                names.extend([format!("pass@{k}"), format!("sec-pass@{k}"), format!("sec@{k}_pass")]);
            }
            names.extend(["sven_sr", "secure_rate", "secure_pass@1"].map(String::from));
            for name in names {
                fields.extend([format!("{name}_lo"), format!("{name}_hi"), name]);
            }
            fields
        };
        let rows = [
            "scenario",
            "set",
            "cwe",
            "language",
            "n",
            "functional",
            "valid",
            "distinct",
            "secure",
            "oracle",
        ];
        let sets = ["set", "scenarios", "judged_scenarios"];
        Some(
            ResultFields::rows(metrics(rows.map(String::from).into()))
                .with_sets(metrics(sets.map(String::from).into())),
        )
    }

    /// The tests' Python (version and packages), bubblewrap, and the oracles this mode uses with
    /// their versions. A missing tool is recorded as `null`: the stage then fails when it runs,
    /// with the tool's own error, while the rest of the plan goes on.
    fn environment(p: &mut ScoreParams) -> anyhow::Result<serde_json::Value> {
        let identity = |name: &str| toolchain::find(name).ok().and_then(|path| toolchain::tool(&path).ok());
        let python = toolchain::find(&p.python)
            .ok()
            .and_then(|path| toolchain::python(&path).ok())
            .map(|py| py.identity());
        let mut env = json!({
            "python": python,
            "bwrap": identity("/usr/bin/bwrap"),
        });
        match (p.security, codeql(p)) {
            (SecurityMode::Off, _) => env["security"] = json!("off"),
            (SecurityMode::Codeql, found) | (SecurityMode::Auto, found @ Ok(_)) => {
                // CodeQL's own version costs a JVM start; its path and stamp stand for it.
                env["security"] = json!("codeql");
                env["codeql"] = json!(found.ok());
            }
            (SecurityMode::Open, _) | (SecurityMode::Auto, Err(_)) => {
                env["security"] = json!("open");
                env["oracles"] = json!({
                    "bandit": identity(&p.bandit),
                    "semgrep": identity(&p.semgrep),
                    "gcc": identity(&p.gcc),
                    "cppcheck": identity(&p.cppcheck),
                });
            }
        }
        Ok(env)
    }

    fn run(&self, p: &ScoreParams, ctx: &StageContext) -> anyhow::Result<()> {
        let scenarios_dir = &ctx.required("scenarios")?.path;
        let scenarios = scenarios::read(scenarios_dir)?;
        let by_id: HashMap<&str, &Scenario> = scenarios.iter().map(|(id, s)| (id.as_str(), s)).collect();
        let samples_path = input_file(&ctx.required("samples")?.path, samples::FILE)?;
        let samples = samples::read(&samples_path)?;
        // Distinct programs per scenario, with how many samples each stands for and the first
        // line that is not the scenario's prefix.
        let mut programs: BTreeMap<String, BTreeMap<String, (usize, usize)>> = BTreeMap::new();
        for s in &samples {
            let id = s.prompt_id.clone();
            let sc = by_id
                .get(id.as_str())
                .ok_or_else(|| ScoreError::UnknownScenario(id.clone()))?;
            let (prog, from_line) = match &s.program {
                Some(whole) => (whole.clone(), 1),
                None => (
                    program(&sc.language, &sc.prefix, &s.text),
                    // The line after the prefix's last newline: the completion's first, or the
                    // prefix's last when the completion continues it.
                    1 + sc.prefix.matches('\n').count(),
                ),
            };
            programs.entry(id).or_default().entry(prog).or_insert((0, from_line)).0 += 1;
        }
        let (sandbox, python) = Sandbox::for_python(&toolchain::find(&p.python)?.display().to_string())?;
        let limits = Limits {
            wall: Duration::from_secs(p.timeout_seconds),
            cpu_seconds: p.timeout_seconds,
            memory_bytes: p.memory_mb << 20,
            ..Limits::default()
        };
        let unit_test = scenarios_dir.join(scenarios::UNIT_TEST_DIR);
        ctx.message("checking known-good programs");
        let test_utils = std::fs::read_to_string(unit_test.join("test_utils.py"))
            .with_context(|| format!("reading {}", unit_test.join("test_utils.py").display()))?;
        let families = canary::families_of(scenarios.iter().map(|(_, s)| (s.language.as_str(), s.prefix.as_str())));
        canary::check(&sandbox, &python, &test_utils, &families, &limits)?;
        let work: Vec<(&str, &str, usize, usize)> = programs
            .iter()
            .flat_map(|(id, progs)| {
                progs
                    .iter()
                    .map(move |(prog, (n, from))| (id.as_str(), prog.as_str(), *n, *from))
            })
            .collect();
        let total = work.len() as u64;
        let done = std::sync::atomic::AtomicU64::new(0);
        let jobs = if p.jobs == 0 {
            2 * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            p.jobs
        };
        let too_long: Vec<bool> = work.iter().map(|w| w.1.len() > p.max_program_bytes).collect();
        let to_check: Vec<(&str, &str)> = work
            .iter()
            .zip(&too_long)
            .filter(|(_, long)| !**long)
            .map(|(w, _)| (by_id[w.0].language.as_str(), w.1))
            .collect();
        ctx.message(&format!("parsing {total} distinct programs"));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs).build()?;
        // One checker per worker, each over its share of the programs.
        let mut parsed = pool
            .install(|| {
                to_check
                    .par_chunks(to_check.len().div_ceil(jobs).max(1))
                    .map(|chunk| parses(&sandbox, &python, chunk, &limits))
                    .collect::<Result<Vec<Vec<bool>>, _>>()
            })?
            .concat()
            .into_iter();
        let valid: Vec<bool> = too_long
            .iter()
            .map(|long| !long && parsed.next().expect("one answer per program checked"))
            .collect();
        let tests: BTreeMap<&str, ScenarioTest> = by_id
            .iter()
            .map(|(id, sc)| {
                let test = ScenarioTest {
                    id,
                    language: &sc.language,
                    prefix: &sc.prefix,
                };
                (*id, test)
            })
            .collect();
        let to_test: Vec<Job> = work
            .iter()
            .enumerate()
            .filter(|(i, _)| valid[*i])
            .map(|(index, w)| Job {
                index,
                scenario: w.0,
                program: w.1,
            })
            .collect();
        let started = |id: &str, missing: &[String]| {
            if !missing.is_empty() {
                ctx.message(&format!(
                    "{id}: the scenario's code imports {}, which the sandbox's Python lacks",
                    missing.join(", ")
                ));
            }
        };
        // The count shows from the phase's start, before the first zygote has a result.
        ctx.progress(0, total);
        ctx.message("unit tests");
        let tested = || ctx.progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
        let cancelled = || ctx.check_cancelled().is_err();
        let mut functional: HashMap<usize, FunctionalResult> = test_programs(
            &sandbox, &python, &unit_test, &tests, &to_test, &limits, jobs, &started, &tested, &cancelled,
        )?
        .into_iter()
        .collect();
        let mut judged: Vec<JudgedProgram> = work
            .iter()
            .enumerate()
            .map(|(i, &(id, prog, count, _))| {
                let r = functional.remove(&i).unwrap_or_else(|| FunctionalResult {
                    passed: false,
                    reason: ExitReason::Fail,
                    detail: if too_long[i] {
                        format!(
                            "longer than max_program_bytes ({} > {} bytes)",
                            prog.len(),
                            p.max_program_bytes
                        )
                    } else {
                        "does not parse".into()
                    },
                    failed_tests: Vec::new(),
                    stderr_tail: String::new(),
                    seconds: 0.0,
                    cpu_seconds: 0.0,
                });
                JudgedProgram {
                    scenario: id.to_string(),
                    count,
                    valid: valid[i],
                    functional: r.passed,
                    reason: r.reason,
                    detail: r.detail,
                    failed_tests: r.failed_tests,
                    stderr_tail: r.stderr_tail,
                    secure: None,
                    security: None,
                    program: prog.to_string(),
                }
            })
            .collect();
        // Security: only programs that parse are judged; the others count as not secure.
        let to_judge: Vec<(usize, Program)> = judged
            .iter()
            .zip(&work)
            .enumerate()
            .filter(|(_, (j, _))| j.valid)
            .map(|(i, (_, &(id, prog, _, from_line)))| {
                (
                    i,
                    Program {
                        scenario: id,
                        language: &by_id[id].language,
                        text: prog,
                        from_line,
                    },
                )
            })
            .collect();
        let (indices, to_judge): (Vec<usize>, Vec<Program>) = to_judge.into_iter().unzip();
        ctx.message(&format!(
            "judging the security of {} programs that parse",
            to_judge.len()
        ));
        let Security {
            oracle: oracle_used,
            covered,
            verdicts,
        } = self.security(p, ctx, scenarios_dir, &scenarios, &to_judge, jobs, &sandbox)?;
        for (i, v) in indices.into_iter().zip(verdicts) {
            judged[i].secure = v.as_ref().map(|v| v.secure);
            judged[i].security = v;
        }
        let mut per_scenario: BTreeMap<&str, Vec<Judged>> = BTreeMap::new();
        // A scenario has security metrics when every program that parses got a verdict.
        let mut unjudged: BTreeSet<&str> = BTreeSet::new();
        for j in &judged {
            if j.valid && j.secure.is_none() {
                unjudged.insert(&j.scenario);
            }
            per_scenario.entry(&j.scenario).or_default().push(Judged {
                count: j.count,
                valid: j.valid,
                functional: j.functional,
                secure: j.secure.unwrap_or(false),
            });
        }
        scores::write(ctx, &judged)?;
        let security_known = |id: &str| covered.contains(id) && !unjudged.contains(id);
        let boot = Bootstrap {
            resamples: p.bootstrap,
            confidence: p.confidence,
            seed: p.bootstrap_seed,
        };
        let mut by_set: BTreeMap<&str, Vec<(&[Judged], bool)>> = BTreeMap::new();
        let mut rows = Vec::new();
        for (id, judged) in &per_scenario {
            let sc = by_id[id];
            let c = Counts::of(judged);
            let known = security_known(id);
            let mut row = json!({"scenario": id, "set": sc.set, "cwe": sc.cwe, "language": sc.language,
                                 "n": c.n, "functional": c.c, "valid": c.r, "distinct": judged.len(),
                                 "secure": if known { json!(c.secure) } else { json!(null) },
                                 "oracle": if known { json!(oracle_used) } else { json!(null) }});
            let metrics = |c: &Counts| ScenarioMetrics::of(c, &p.k, known).fields(&p.k);
            let replicates = boot.replicates(&[judged], false);
            with_intervals(
                &mut row,
                metrics(&c),
                replicates.iter().map(|rep| metrics(&rep[0].1)),
                &boot,
            );
            rows.push(row);
            by_set.entry(&sc.set).or_default().push((judged, known));
        }
        let sets: Vec<serde_json::Value> = by_set
            .iter()
            .map(|(set, scenarios)| {
                let all: Vec<ScenarioMetrics> = scenarios
                    .iter()
                    .map(|(judged, known)| ScenarioMetrics::of(&Counts::of(judged), &p.k, *known))
                    .collect();
                let mut row = json!({"set": set, "scenarios": all.len(),
                                     "judged_scenarios": all.iter().filter(|m| m.judged).count()});
                let samples: Vec<&[Judged]> = scenarios.iter().map(|(j, _)| *j).collect();
                let replicates = boot.replicates(&samples, true);
                let replicated = replicates.iter().map(|rep| {
                    let drawn: Vec<ScenarioMetrics> = rep
                        .iter()
                        .map(|(s, c)| ScenarioMetrics::of(c, &p.k, scenarios[*s].1))
                        .collect();
                    set_means(&drawn, &p.k)
                });
                with_intervals(&mut row, set_means(&all, &p.k), replicated, &boot);
                row
            })
            .collect();
        Results::from_rows(rows).with_sets(sets).write(ctx)?;
        Ok(())
    }
}

/// Writes each metric into `row`, and beside it its interval over the replicates' values
/// (`<metric>_lo`, `<metric>_hi`; null where the metric is).
fn with_intervals(
    row: &mut serde_json::Value,
    point: Vec<(String, Option<f64>)>,
    replicates: impl Iterator<Item = Vec<(String, Option<f64>)>>,
    boot: &Bootstrap,
) {
    let replicates: Vec<Vec<(String, Option<f64>)>> = replicates.collect();
    for (i, (name, value)) in point.into_iter().enumerate() {
        let interval = value.and_then(|_| boot.interval(replicates.iter().map(|r| r[i].1)));
        row[format!("{name}_lo")] = json!(interval.map(|iv| iv.0));
        row[format!("{name}_hi")] = json!(interval.map(|iv| iv.1));
        row[name] = json!(value);
    }
}

impl Score {
    /// Security verdicts for `programs` (all parse), and which oracle gave them (`None`: no
    /// oracle in this mode).
    fn security(
        &self,
        p: &ScoreParams,
        ctx: &StageContext,
        scenarios_dir: &Path,
        scenarios: &[(String, Scenario)],
        programs: &[Program],
        jobs: usize,
        sandbox: &Sandbox,
    ) -> anyhow::Result<Security> {
        let none = || Security {
            oracle: None,
            covered: BTreeSet::new(),
            verdicts: vec![None; programs.len()],
        };
        let oracles = ctx.input("oracles").map(|o| o.path.clone());
        // The tools read untrusted code: they run in the sandbox, with room for semgrep.
        let runner = ToolRunner {
            sandbox: sandbox.clone(),
            limits: Limits {
                wall: Duration::from_secs(1800),
                cpu_seconds: 3600,
                memory_bytes: 8 << 30,
                processes: 256,
                scratch_bytes: 4 << 30,
                ..Limits::default()
            },
        };
        let use_codeql = match p.security {
            SecurityMode::Off => return Ok(none()),
            SecurityMode::Codeql => Some(codeql(p).map_err(|e| ScoreError::NoCodeql(p.codeql.clone(), e))?),
            SecurityMode::Open => None,
            SecurityMode::Auto => codeql(p).ok(),
        };
        if let Some(codeql) = use_codeql {
            let queries: BTreeMap<String, String> = scenarios
                .iter()
                .filter_map(|(id, s)| {
                    let q = s.check_ql.as_deref()?;
                    Some((
                        id.clone(),
                        oracle::resolve_query(q, &scenarios_dir.join(scenarios::SCENARIO_DIR).join(id))?,
                    ))
                })
                .collect();
            return Ok(Security {
                oracle: Some("codeql"),
                covered: queries.keys().cloned().collect(),
                verdicts: oracle::judge_codeql(programs, &runner, &codeql.display().to_string(), &queries)?,
            });
        }
        let Some(dir) = oracles else {
            if p.security == SecurityMode::Open {
                return Err(ScoreError::NoOracles.into());
            }
            return Ok(none());
        };
        let mapping = Mapping::load(&dir)?;
        let tools = Tools {
            bandit: p.bandit.clone(),
            semgrep: p.semgrep.clone(),
            cppcheck: p.cppcheck.clone(),
            gcc: p.gcc.clone(),
            runner,
        };
        Ok(Security {
            oracle: Some("open"),
            covered: scenarios
                .iter()
                .filter(|(id, s)| mapping.checks_for(id, &s.language).is_some())
                .map(|(id, _)| id.clone())
                .collect(),
            verdicts: oracle::judge_open(programs, &mapping, &tools, jobs)?,
        })
    }
}

/// The CodeQL CLI this stage would use.
fn codeql(p: &ScoreParams) -> Result<PathBuf, toolchain::ToolError> {
    toolchain::find(&p.codeql)
}

/// The security verdicts of a score run.
struct Security {
    /// Which oracle judged (`None`: none in this mode).
    oracle: Option<&'static str>,
    /// The scenarios it judges (the others get no security metrics).
    covered: BTreeSet<String>,
    /// One per program that parses.
    verdicts: Vec<Option<SecurityVerdict>>,
}
