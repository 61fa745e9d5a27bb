//! The `secvec` command line.

mod dag;
mod runs;
mod show;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use secvec_cache::{Cache, Digest, StatCache};
use secvec_engine::exec::{self, RunOptions};
use secvec_engine::manifest;
use secvec_engine::plan::{self, Plan};
use secvec_engine::progress::{Bars, Event, JsonLines, Lines, Reporter, StageProgress, Status};
use secvec_engine::runner;
use secvec_engine::{ManifestError, Registry};

/// Standard output was closed by its reader (`secvec schema | head`): the command stops, and
/// that is not an error, as for `cat`.
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// `println!` that returns an error instead of panicking when stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => anyhow::Error::new(StdoutClosed),
            _ => anyhow::Error::new(e).context("writing to standard output"),
        })?
    }};
}

#[derive(Parser)]
#[command(
    name = "secvec",
    version,
    about = "Reproduce and extend secure-code-generation papers from a YAML manifest"
)]
struct Cli {
    /// Cache directory.
    #[arg(long, global = true, env = "SECVEC_CACHE", default_value = ".secvec")]
    cache: PathBuf,
    /// Where `<manifest>/<stage>` links to outputs are kept.
    #[arg(long, global = true, env = "SECVEC_OUT", default_value = "out")]
    out: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a manifest: stale stages execute, cached ones are reused.
    Run {
        #[command(flatten)]
        target: Target,
        /// JSON events on stdout, one per line: `started`, `progress` and `finished` (the
        /// stage's outcome).
        #[arg(long)]
        json: bool,
        /// CPU slots (default: the number of cores).
        #[arg(long)]
        jobs: Option<u32>,
        /// GPU slots (default: the CUDA devices libtorch sees, when a stage needs one).
        #[arg(long)]
        gpus: Option<u32>,
        /// Seconds between progress lines (or `progress` events) for a running stage when
        /// stdout is not a terminal.
        #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
        progress_every: f64,
        #[command(flatten)]
        executor: ExecutorArgs,
    },
    /// Run one stage from its job description (what `run --executor slurm` submits): commit its
    /// output to the job's cache and, with `--result`, write how it ended. The executor that
    /// made the job holds the key's lock and publishes the output.
    RunStage {
        /// A job description (`<cache>/jobs/<key>/attempt-N.json`).
        job: PathBuf,
        /// Where to write the result (atomically, as the job's last act).
        #[arg(long)]
        result: Option<PathBuf>,
    },
    /// Show what `run` would do and why each stage would run.
    Plan {
        #[command(flatten)]
        target: Target,
        /// One JSON line per stage.
        #[arg(long)]
        json: bool,
    },
    /// Print the manifest as overlays and `--set`s compose it, without running; with
    /// `--resolved`, every concrete stage (matrix variants too) with its params as the stage
    /// receives them (defaults and kind defaults applied).
    Config {
        #[command(flatten)]
        composed: Composed,
        /// Print the concrete stages with their resolved params and inputs.
        #[arg(long)]
        resolved: bool,
    },
    /// List the recorded runs, oldest first: id, manifest, overlays and `--set`s, stages ran and
    /// cached, exit.
    Runs {
        /// The records themselves, one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// The params that differ between two runs (in any stage, and the overlays and `--set`s),
    /// and the metrics of their results that moved.
    Diff {
        /// A run id (or a unique prefix), `latest` or `latest~N`.
        a: String,
        /// The run to compare it with (default: the latest).
        #[arg(default_value = "latest")]
        b: String,
        /// Both lists as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Chosen metrics of several runs, or of every matrix variant of a stage, in one table.
    Compare {
        /// Runs (ids, prefixes, `latest`, `latest~N`); default: the latest.
        runs: Vec<String>,
        /// Stages to show (a glob over concrete stage names, e.g. `sweep-scores-lpo*`).
        #[arg(long, default_value = "*")]
        stage: String,
        /// A metric: a results field (`pass@1`, the mean over rows) or a set's (`main:sec-pass@1`);
        /// repeatable. Default: every metric the stages shown have in common.
        #[arg(long = "metric")]
        metrics: Vec<String>,
        /// One JSON object per row.
        #[arg(long)]
        json: bool,
    },
    /// Print a manifest's graph of stages without running it.
    Dag {
        #[command(flatten)]
        composed: Composed,
        /// How to print the graph.
        #[arg(long, value_enum, default_value = "text")]
        format: dag::Format,
    },
    /// Print the JSON Schema of manifests (what `schema/manifest.schema.json` holds).
    Schema {
        /// The schema of overlay files instead (`schema/overlay.schema.json`).
        #[arg(long)]
        overlay: bool,
    },
    /// List the stage kinds with their inputs; with a kind, also its params (types, defaults,
    /// docs).
    Kinds {
        /// A kind to describe in full (`generate`, `score`, …).
        kind: Option<String>,
    },
    /// Show what a stage's last run published: outputs, key, inputs, params, results.
    Show {
        /// A stage (`pairs`), every variant of a matrix stage (`steered`), the variants with
        /// some values (`steered@theta=0.5`) or one variant (`steered@operator=negation,theta=0.5`).
        stage: String,
        /// The whole provenance record as JSON (a list when several outputs match).
        #[arg(long)]
        json: bool,
        /// The manifest name, when several ran a stage of this name.
        #[arg(long)]
        manifest: Option<String>,
    },
    /// Show the tools this machine offers the stages (Python, oracles, sandbox, cgroups,
    /// libtorch, CUDA) and what is missing.
    Doctor,
    /// Print the content digest of a file or directory, as the cache computes it.
    Digest {
        /// A file or directory.
        path: PathBuf,
    },
    /// Cache maintenance.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Serve a model as an OpenAI-compatible endpoint (`/v1/chat/completions`,
    /// `/v1/completions`, `/v1/models`) until interrupted.
    Serve {
        /// An HF model directory (config.json, safetensors, tokenizer.json).
        model: PathBuf,
        /// A PEFT LoRA adapter (or a `merge` output) applied to the model.
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// 0 picks a free port; the address is printed once the model is loaded.
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// `cpu`, `cuda` or `cuda:N`.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// `f32`, `bf16` or `f16`.
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// The model name clients send (default: the model folder's name).
        #[arg(long)]
        name: Option<String>,
        /// The most KV cache one request may need, in MiB (n samples and the prompt, each
        /// prompt + max_tokens long); a request that would need more gets a 400.
        #[arg(long, default_value_t = 4096)]
        kv_budget_mib: u64,
    },
}

/// A manifest as composed from its file, overlays and overrides.
#[derive(Args)]
struct Composed {
    /// The manifest (YAML).
    manifest: PathBuf,
    /// Overlay deep-merged onto the manifest (repeatable, applied in order; `null` deletes a key).
    #[arg(short = 'o', long = "overlay")]
    overlays: Vec<PathBuf>,
    /// Override one value, e.g. `--set stages.train.params.lr=0.0002`.
    #[arg(long = "set")]
    sets: Vec<String>,
}

impl Composed {
    fn plan(&self, registry: &Registry, cache: &Path) -> Result<Plan> {
        load_plan(registry, cache, &self.manifest, &self.overlays, &self.sets)
    }
}

#[derive(Args)]
struct Target {
    #[command(flatten)]
    composed: Composed,
    /// Only these stages and what they depend on.
    #[arg(long)]
    only: Vec<String>,
    /// Rerun these stages even when cached.
    #[arg(long)]
    force: Vec<String>,
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Re-hash every artifact and check every entry.
    Verify {
        /// Remove broken entries and artifacts so the next run recomputes them.
        #[arg(long)]
        fix: bool,
    },
    /// Remove what none of the given manifests references.
    Gc {
        /// The manifests whose cached results to keep (as they plan now).
        manifests: Vec<PathBuf>,
        /// Overlays applied to every manifest named (repeatable).
        #[arg(short = 'o', long = "overlay")]
        overlays: Vec<PathBuf>,
        /// Overrides applied to every manifest named (repeatable).
        #[arg(long = "set")]
        sets: Vec<String>,
        /// List what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also forget every run record (`secvec runs`); kept otherwise.
        #[arg(long)]
        runs: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(err) if err.is::<StdoutClosed>() => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(m) = err.downcast_ref::<ManifestError>() {
                eprintln!("error: {m}");
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(2)
        }
    }
}

/// Loads and plans a manifest, hashing `{path:}` inputs through the stat cache kept in `cache`
/// (saved there when the cache exists).
fn load_plan(
    registry: &Registry,
    cache: &Path,
    manifest: &Path,
    overlays: &[PathBuf],
    sets: &[String],
) -> Result<Plan> {
    let loaded = manifest::load(manifest, overlays, sets)?;
    let mut stat = StatCache::load(&cache.join("stat.json"));
    let plan = plan::build(&loaded, registry, &mut stat)?;
    if cache.is_dir() {
        stat.save();
    }
    Ok(plan)
}

/// Where `run` executes stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Executor {
    /// In this process, within `--jobs` cores and `--gpus` GPUs.
    Local,
    /// As Slurm batch jobs (`sbatch`), on nodes that share the cache's filesystem; `--jobs`
    /// caps the jobs queued at once.
    Slurm,
}

#[derive(clap::Args, Debug)]
struct ExecutorArgs {
    /// Where stages run.
    #[arg(long, value_enum, default_value = "local")]
    executor: Executor,
    /// Slurm partition to submit to (default: the cluster's default partition).
    #[arg(long)]
    partition: Option<String>,
    /// Slurm account to charge.
    #[arg(long)]
    account: Option<String>,
    /// A further `sbatch` argument, e.g. `--sbatch-arg=--qos=high` (repeatable).
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
    /// Seconds between looks at the Slurm queue and the jobs' results.
    #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
    poll: f64,
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    let registry = secvec_stages::registry();
    match cli.command {
        Command::Run {
            target,
            json,
            jobs,
            gpus,
            progress_every,
            executor,
        } => {
            let started = std::time::SystemTime::now();
            let plan = Arc::new(target.composed.plan(&registry, &cli.cache)?);
            // Selectors are checked before the cache is touched, like the manifest itself.
            exec::selection(&plan, &target.only, &target.force)?;
            let cache =
                Arc::new(Cache::open(&cli.cache).with_context(|| format!("opening cache {}", cli.cache.display()))?);
            let every = std::time::Duration::from_secs_f64(progress_every);
            let reporter: Arc<dyn Reporter> = if json {
                Arc::new(JsonLines::new(every))
            } else if std::io::stdout().is_terminal() {
                Arc::new(Bars::new())
            } else {
                Arc::new(Lines::new(every))
            };
            let cpus = std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1);
            let opts = RunOptions {
                only: target.only.clone(),
                force: target.force.clone(),
                cpu_slots: jobs.unwrap_or(cpus),
                gpu_slots: match gpus {
                    Some(n) => n,
                    None if plan.nodes.iter().any(|n| n.resources.gpu > 0) => {
                        secvec_stages::worker::torch_info().map_or(0, |t| t.cuda_devices as u32)
                    }
                    None => 0,
                },
                out_dir: cli.out.clone(),
                runner: Arc::new(runner::Local::new(cache.clone())),
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let cancel = Arc::new(AtomicBool::new(false));
            let outcomes = runtime.block_on(async {
                let flag = cancel.clone();
                tokio::spawn(async move {
                    interrupted().await;
                    flag.store(true, Ordering::Relaxed);
                    eprintln!("interrupted: finishing running stages; committed outputs are kept");
                });
                let opts = match executor.executor {
                    Executor::Local => opts,
                    Executor::Slurm => {
                        let options = runner::SlurmOptions {
                            partition: executor.partition.clone(),
                            account: executor.account.clone(),
                            sbatch_args: executor.sbatch_args.clone(),
                            secvec: std::env::current_exe().context("finding this secvec binary")?,
                            poll: std::time::Duration::from_secs_f64(executor.poll),
                        };
                        let slurm = runner::Slurm::connect(options, cache.clone())
                            .await
                            .context("connecting to Slurm (--executor slurm)")?;
                        RunOptions {
                            // Slots cap the jobs queued at once; the default leaves room for a
                            // wide sweep.
                            cpu_slots: jobs.unwrap_or(256),
                            runner: Arc::new(slurm),
                            ..opts
                        }
                    }
                };
                anyhow::Ok(exec::run(plan.clone(), cache.clone(), opts, reporter, cancel.clone()).await?)
            })?;
            let count = |s: Status| outcomes.iter().filter(|o| o.status == s).count();
            let failed: Vec<&str> = outcomes
                .iter()
                .filter(|o| o.status == Status::Failed)
                .map(|o| o.stage.as_str())
                .collect();
            if !json {
                let interrupted = match count(Status::Interrupted) {
                    0 => String::new(),
                    n => format!(", {n} interrupted"),
                };
                eprintln!(
                    "{} stages: {} ran, {} cached, {} failed{interrupted}, {} skipped",
                    outcomes.len(),
                    count(Status::Ran),
                    count(Status::Cached),
                    failed.len(),
                    count(Status::Skipped)
                );
            }
            let exit = if cancel.load(Ordering::Relaxed) {
                runs::Exit::Interrupted
            } else if failed.is_empty() {
                runs::Exit::Ok
            } else {
                runs::Exit::Failed
            };
            let asked = runs::Invocation {
                manifest: &target.composed.manifest,
                overlays: &target.composed.overlays,
                sets: &target.composed.sets,
                only: &target.only,
                force: &target.force,
            };
            // The run's outputs are committed either way; a record that cannot be written is
            // worth a warning, not a failed run.
            match runs::record(&cache, &asked, &plan, &outcomes, started, exit) {
                Ok(id) if !json => eprintln!("recorded as run {id}"),
                Ok(_) => {}
                Err(e) => eprintln!("warning: the run was not recorded: {e:#}"),
            }
            if exit == runs::Exit::Interrupted {
                return Ok(ExitCode::from(130));
            }
            if !failed.is_empty() {
                eprintln!("error: {} stage(s) failed: {}", failed.len(), failed.join(", "));
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::RunStage { job, result } => run_stage(&registry, &job, result.as_deref()),
        Command::Plan { target, json } => {
            let plan = target.composed.plan(&registry, &cli.cache)?;
            let cache = open_if_present(&cli.cache)?;
            let rows = exec::explain(&plan, cache.as_ref(), &target.only, &target.force)?;
            if json {
                for r in &rows {
                    out!("{}", serde_json::to_string(r)?);
                }
            } else {
                let w = rows.iter().map(|r| r.stage.len()).max().unwrap_or(5).max(5);
                let k = rows.iter().map(|r| r.kind.len()).max().unwrap_or(4).max(4);
                out!("{:<w$}  {:<k$}  {:<6}  why", "stage", "kind", "action");
                for r in &rows {
                    let line = format!("{:<w$}  {:<k$}  {:<6}  {}", r.stage, r.kind, r.action, r.why);
                    out!("{}", line.trim_end());
                }
                let stale = rows.iter().filter(|r| r.action == "run").count();
                out!("{stale} of {} stages would run", rows.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { composed, resolved } => {
            let text = if resolved {
                let plan = composed.plan(&registry, &cli.cache)?;
                serde_yaml::to_string(&resolved_stages(&plan))?
            } else {
                let loaded = manifest::load(&composed.manifest, &composed.overlays, &composed.sets)?;
                serde_yaml::to_string(&loaded.manifest)?
            };
            out!("{}", text.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { json } => {
            for r in runs::list(&cli.cache)? {
                if json {
                    out!("{}", serde_json::to_string(&r)?);
                    continue;
                }
                let count = |s: Status| r.stages.values().filter(|x| x.status == s).count();
                let mut asked = vec![r.manifest.display().to_string()];
                asked.extend(r.overlays.iter().map(|o| format!("-o {}", o.display())));
                asked.extend(r.sets.iter().map(|s| format!("--set {s}")));
                out!(
                    "{}  {:<11}  {:>4} ran {:>4} cached {:>3} failed  {:>8.1}s  {}",
                    r.id,
                    format!("{:?}", r.exit).to_lowercase(),
                    count(Status::Ran),
                    count(Status::Cached),
                    count(Status::Failed),
                    r.seconds,
                    asked.join(" ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { a, b, json } => {
            let records = runs::list(&cli.cache)?;
            let (x, y) = (&records[runs::find(&records, &a)?], &records[runs::find(&records, &b)?]);
            let (params, metrics) = runs::diff(x, y);
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"a": x.id, "b": y.id, "params": params, "metrics": metrics})
                    )?
                );
                return Ok(ExitCode::SUCCESS);
            }
            out!("a: {}\nb: {}", x.id, y.id);
            for (title, changes) in [("params", &params), ("metrics", &metrics)] {
                out!("\n{title}:");
                if changes.is_empty() {
                    out!("  (none differ)");
                }
                for c in changes {
                    let moved = match (c.a.as_f64(), c.b.as_f64()) {
                        (Some(p), Some(q)) if title == "metrics" => format!("  ({:+.4})", q - p),
                        _ => String::new(),
                    };
                    out!("  {}: {} → {}{moved}", c.what, c.a, c.b);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare {
            runs: which,
            stage,
            metrics,
            json,
        } => {
            let records = runs::list(&cli.cache)?;
            let which = if which.is_empty() {
                vec!["latest".to_string()]
            } else {
                which
            };
            let chosen = which
                .iter()
                .map(|w| runs::find(&records, w).map(|i| &records[i]))
                .collect::<Result<Vec<_>>>()?;
            let glob = globset::Glob::new(&stage)
                .with_context(|| format!("--stage {stage}: not a glob"))?
                .compile_matcher();
            let (header, rows) = runs::compare(&chosen, &glob, &metrics);
            if rows.is_empty() {
                bail!("no stage matching `{stage}` has results in the runs named");
            }
            if json {
                for row in &rows {
                    let obj: serde_json::Map<String, serde_json::Value> =
                        header.iter().cloned().zip(row.iter().cloned()).collect();
                    out!("{}", serde_json::to_string(&obj)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|v| match v {
                            serde_json::Value::Number(n) => format!("{:.4}", n.as_f64().unwrap_or(f64::NAN)),
                            serde_json::Value::String(s) => s.clone(),
                            _ => "—".to_string(),
                        })
                        .collect()
                })
                .collect();
            let widths: Vec<usize> = (0..header.len())
                .map(|j| {
                    cells
                        .iter()
                        .map(|r| r[j].chars().count())
                        .chain([header[j].chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |r: &[String]| {
                r.iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            out!("{}", line(&header));
            for r in &cells {
                out!("{}", line(r));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dag { composed, format } => {
            let plan = composed.plan(&registry, &cli.cache)?;
            out!("{}", dag::render(&plan, format).trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema { overlay } => {
            let schema = if overlay {
                secvec_engine::schema::overlay_schema(&registry)
            } else {
                secvec_engine::schema::manifest_schema(&registry)
            };
            out!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Kinds { kind } => {
            let kinds: Vec<_> = match &kind {
                None => registry.kinds().cloned().collect(),
                Some(name) => vec![registry.get(name).with_context(|| {
                    let known: Vec<&str> = registry.kinds().map(|k| k.kind()).collect();
                    format!("no stage kind `{name}`; the kinds are {}", known.join(", "))
                })?],
            };
            for k in kinds {
                out!("{} (v{}): {}", k.kind(), k.version(), k.description());
                for s in k.inputs() {
                    let opt = if s.optional { ", optional" } else { "" };
                    let many = if s.many { ", several" } else { "" };
                    out!("    input {}: {}{many}{opt} — {}", s.name, s.describe(), s.doc);
                }
                out!("    output: {}", k.output_tags().join(", "));
                if kind.is_some() {
                    out!("    params:");
                    for p in secvec_engine::schema::params_of(k.as_ref()) {
                        let default = match (p.required, p.default) {
                            (true, _) => "required".to_string(),
                            (false, Some(d)) => format!("default {d}"),
                            (false, None) => "optional".to_string(),
                        };
                        let doc = if p.doc.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", p.doc)
                        };
                        out!("      {} ({}; {default}){doc}", p.name, p.kind);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { stage, manifest, json } => {
            let found = show::find(&cli.out, &cli.cache, &stage, manifest.as_deref())?;
            let several = found
                .iter()
                .any(|f| f.manifest != found[0].manifest && f.stage == found[0].stage);
            if several {
                bail!(
                    "stage `{stage}` ran in several manifests ({}); pick one with --manifest",
                    found.iter().map(|f| f.manifest.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            let records = || {
                found
                    .iter()
                    .map(|f| serde_json::json!({"outputs": f.link, "record": f.record}))
            };
            match (json, found.as_slice()) {
                (true, [_]) => out!("{}", serde_json::to_string_pretty(&records().next())?),
                (true, _) => out!("{}", serde_json::to_string_pretty(&records().collect::<Vec<_>>())?),
                (false, [one]) => out!("{}", show::summary(one)),
                (false, many) => out!("{}", show::table(many)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => {
            let checks = secvec_stages::doctor::checks();
            let w = checks.iter().map(|c| c.what.len()).max().unwrap_or(0);
            for c in &checks {
                let mark = match (c.ok, c.required) {
                    (true, _) => "ok",
                    (false, true) => "MISSING",
                    (false, false) => "absent",
                };
                out!("{mark:<7}  {:<w$}  {}", c.what, c.detail);
            }
            Ok(if checks.iter().any(|c| c.required && !c.ok) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Serve {
            model,
            adapter,
            host,
            port,
            device,
            dtype,
            name,
            kv_budget_mib,
        } => {
            let dtype = serde_json::from_value(serde_json::Value::String(dtype.clone()))
                .with_context(|| format!("--dtype {dtype}: use f32, bf16 or f16"))?;
            let request = secvec_stages::worker::ServeRequest {
                model,
                adapter,
                host,
                port,
                device,
                dtype,
                name,
                kv_budget_mib: Some(kv_budget_mib),
            };
            let worker = secvec_stages::worker::worker_path()?;
            // The worker takes this process's place, so signals and the exit status are its own.
            use std::os::unix::process::CommandExt;
            let err = std::process::Command::new(&worker)
                .arg("serve")
                .arg(serde_json::to_string(&request)?)
                .exec();
            Err(anyhow::anyhow!("starting {}: {err}", worker.display()))
        }
        Command::Digest { path } => {
            let d: Digest = secvec_cache::hash_path(&path).with_context(|| format!("hashing {}", path.display()))?;
            out!("{d}  {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Cache(CacheCommand::Verify { fix }) => {
            let cache = open_if_present(&cli.cache)?.with_context(|| format!("no cache at {}", cli.cache.display()))?;
            let report = cache.verify(fix)?;
            for p in &report.problems {
                out!("corrupt: {}: {}", p.path.display(), p.what);
            }
            out!(
                "checked {} artifacts and {} entries: {} problem(s){}",
                report.artifacts_checked,
                report.entries_checked,
                report.problems.len(),
                if fix {
                    format!(", {} removed", report.removed)
                } else {
                    String::new()
                }
            );
            Ok(if report.problems.is_empty() || fix {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Cache(CacheCommand::Gc {
            manifests,
            overlays,
            sets,
            dry_run,
            runs: forget_runs,
        }) => {
            if manifests.is_empty() {
                bail!("name the manifests whose results to keep: secvec cache gc MANIFEST...");
            }
            let plans = manifests
                .iter()
                .map(|m| load_plan(&registry, &cli.cache, m, &overlays, &sets))
                .collect::<Result<Vec<_>>>()?;
            let cache = Cache::open_exclusive(&cli.cache)?;
            let mut keep = std::collections::HashSet::new();
            for plan in &plans {
                for row in exec::explain(plan, Some(&cache), &[], &[])? {
                    if let (true, Some(k)) = (row.action == "cached", row.key) {
                        keep.insert(k.parse::<Digest>()?);
                    }
                }
            }
            let r = cache.gc(&keep, dry_run)?;
            let verb = if dry_run { "would remove" } else { "removed" };
            let mut by_manifest: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
            for (m, stage) in &r.stages_removed {
                by_manifest.entry(m).or_default().push(stage);
            }
            for (m, stages) in &mut by_manifest {
                stages.sort_unstable();
                out!(
                    "{verb} the results of {} stage(s) of {m}: {}",
                    stages.len(),
                    stages.join(", ")
                );
            }
            for link in dangling_links(&cli.out, &r.artifacts, dry_run)? {
                out!("{verb} the dangling link {}", link.display());
            }
            out!(
                "{verb} {} entries and {} artifacts ({:.1} MB); kept {} entries",
                r.entries_removed,
                r.artifacts_removed,
                r.bytes_freed as f64 / 1e6,
                r.entries_kept
            );
            if forget_runs && !dry_run {
                out!("forgot {} run records", runs::forget_all(&cli.cache)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Every concrete stage of a plan as `secvec config --resolved` prints it: kind, labels, the
/// params the stage receives, and each input as stage names or paths.
fn resolved_stages(plan: &Plan) -> serde_json::Value {
    let stages: serde_json::Map<String, serde_json::Value> = plan
        .nodes
        .iter()
        .map(|n| {
            let inputs: serde_json::Map<String, serde_json::Value> = n
                .inputs
                .iter()
                .map(|(slot, sources)| {
                    let named: Vec<String> = sources
                        .iter()
                        .map(|s| match s {
                            plan::Source::Node(i) => plan.nodes[*i].name.clone(),
                            plan::Source::Path { path, .. } => path.display().to_string(),
                        })
                        .collect();
                    (slot.clone(), serde_json::json!(named))
                })
                .collect();
            let mut stage = serde_json::json!({"kind": n.kind.kind(), "params": n.params, "inputs": inputs});
            if !n.labels.is_empty() {
                stage["labels"] = serde_json::json!(n.labels);
            }
            (n.name.clone(), stage)
        })
        .collect();
    serde_json::json!({"name": plan.manifest_name, "stages": stages})
}

/// Links under `out/<manifest>/` whose outputs are gone or among `removed`, with their
/// provenance records; removed unless `dry_run`.
fn dangling_links(out: &Path, removed: &[PathBuf], dry_run: bool) -> Result<Vec<PathBuf>> {
    let removed: std::collections::HashSet<PathBuf> = removed.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let mut found = Vec::new();
    for manifest in std::fs::read_dir(out).into_iter().flatten().flatten() {
        for entry in std::fs::read_dir(manifest.path()).into_iter().flatten().flatten() {
            let link = entry.path();
            let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            let gone = !link.exists() || link.canonicalize().is_ok_and(|t| removed.contains(&t));
            if is_link && gone {
                if !dry_run {
                    std::fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
                    let record =
                        link.with_file_name(format!("{}.provenance.json", entry.file_name().to_string_lossy()));
                    let _ = std::fs::remove_file(record);
                }
                found.push(link);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Resolves on Ctrl-C or SIGTERM (what a scheduler sends before it kills a job).
async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `secvec run-stage`: one job, as a cluster node runs it. Its log gets the plain progress
/// lines a local run prints.
fn run_stage(registry: &Registry, path: &Path, result: Option<&Path>) -> Result<ExitCode> {
    use secvec_engine::job::{Job, JobResult};
    let job = Job::read(path).map_err(anyhow::Error::msg)?;
    let started = std::time::Instant::now();
    let reporter: Arc<dyn Reporter> = Arc::new(Lines::new(std::time::Duration::from_secs(30)));
    reporter.event(Event::Planned { total: 1 });
    reporter.event(Event::Started { stage: &job.stage });
    let progress = Arc::new(StageProgress {
        stage: job.stage.clone(),
        reporter,
    });
    let cancel = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let flag = cancel.clone();
    runtime.spawn(async move {
        interrupted().await;
        flag.store(true, Ordering::Relaxed);
    });
    let outcome = job.kind_in(registry).and_then(|kind| {
        job.check_environment(kind.as_ref())?;
        let cache = Cache::open(&job.cache).map_err(|e| format!("opening cache {}: {e}", job.cache.display()))?;
        job.run(kind.as_ref(), &cache, progress, cancel.clone())
    });
    // Stopped by the scheduler (cancelled, preempted, out of time): no result, so that the
    // executor asks the scheduler why the job ended.
    if cancel.load(Ordering::Relaxed) {
        eprintln!("stopped by a signal: nothing of stage {} was committed", job.stage);
        return Ok(ExitCode::from(143));
    }
    if let Some(path) = result {
        let written = JobResult {
            stage: job.stage.clone(),
            key: job.key,
            attempt: job.attempt,
            output: outcome.as_ref().ok().copied(),
            error: outcome.as_ref().err().cloned(),
            seconds: started.elapsed().as_secs_f64(),
            host: secvec_engine::provenance::Host::this().hostname,
        };
        written
            .write(path)
            .with_context(|| format!("writing the job's result to {}", path.display()))?;
    }
    match outcome {
        Ok(output) => {
            eprintln!("committed {} as {}", job.stage, output.short());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: stage {} failed: {e}", job.stage);
            Ok(ExitCode::from(1))
        }
    }
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("`{text}` is not a positive number of seconds")),
    }
}

fn open_if_present(root: &Path) -> Result<Option<Cache>> {
    if !root.join("LOCK").exists() {
        return Ok(None);
    }
    Ok(Some(
        Cache::open(root).with_context(|| format!("opening cache {}", root.display()))?,
    ))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_command_and_argument_says_what_it_is_for() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = ["help", "version"].contains(&arg.get_id().as_str());
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {}", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "secvec", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
