//! `secvec run`: runs a manifest.

use super::interrupted;
use super::Globals;
use super::Target;
use crate::exit::Exit;
use crate::runs;
use anyhow::Context;
use anyhow::Result;
use secvec_cache::Cache;
use secvec_engine::exec::{self, RunOptions};
use secvec_engine::progress::{Bars, JsonLines, Lines, Reporter, Status};
use secvec_engine::runner;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    /// JSON events on stdout, one per line: `started`, `progress` and `finished` (the
    /// stage's outcome).
    #[arg(long)]
    pub json: bool,
    /// CPU slots (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<u32>,
    /// GPU slots (default: the CUDA devices libtorch sees, when a stage needs one).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// Seconds between progress lines (or `progress` events) for a running stage when
    /// stdout is not a terminal.
    #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
    pub progress_every: f64,
    #[command(flatten)]
    pub executor: ExecutorArgs,
}

pub fn run(args: RunArgs, globals: &Globals) -> Result<Exit> {
    let RunArgs {
        target,
        json,
        jobs,
        gpus,
        progress_every,
        executor,
    } = args;
    let started = std::time::SystemTime::now();
    let plan = Arc::new(target.composed.plan(&globals.registry, &globals.cache)?);
    // Selectors are checked before the cache is touched, like the manifest itself.
    exec::selection(&plan, &target.only, &target.force)?;
    let cache =
        Arc::new(Cache::open(&globals.cache).with_context(|| format!("opening cache {}", globals.cache.display()))?);
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
                secvec_stages::device::torch_info().map_or(0, |t| t.cuda_devices as u32)
            }
            None => 0,
        },
        out_dir: globals.out.clone(),
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
        return Ok(Exit::Interrupted);
    }
    if !failed.is_empty() {
        eprintln!("error: {} stage(s) failed: {}", failed.len(), failed.join(", "));
        return Ok(Exit::Failed);
    }
    Ok(Exit::Success)
}

/// Where `run` executes stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
    /// In this process, within `--jobs` cores and `--gpus` GPUs.
    Local,
    /// As Slurm batch jobs (`sbatch`), on nodes that share the cache's filesystem; `--jobs`
    /// caps the jobs queued at once.
    Slurm,
}

#[derive(clap::Args, Debug)]
pub struct ExecutorArgs {
    /// Where stages run.
    #[arg(long, value_enum, default_value = "local")]
    pub executor: Executor,
    /// Slurm partition to submit to (default: the cluster's default partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm account to charge.
    #[arg(long)]
    pub account: Option<String>,
    /// A further `sbatch` argument, e.g. `--sbatch-arg=--qos=high` (repeatable).
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Seconds between looks at the Slurm queue and the jobs' results.
    #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
    pub poll: f64,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("`{text}` is not a positive number of seconds")),
    }
}
