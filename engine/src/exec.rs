//! Runs a plan: decides which stale stages may run now (their inputs are done, slots are free),
//! hands each to a [`Runner`] as a [`Job`], retries failed attempts as the manifest allows, and
//! publishes what they commit. A failure stops only the stages that depend on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use secvec_cache::{key_of, write_atomic, ActionEntry, Cache, Digest, Found, KeyLock};
use secvec_stage::{InputArtifact, ProgressSink, Resources};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use crate::error::ManifestError;
use crate::job::{Job, JobInput};
use crate::plan::{Plan, Source};
use crate::progress::{Event, Outcome, Reporter, StageProgress, Status};
use crate::provenance::{InputOrigin, Published};
use crate::runner::{Failure, FailureKind, Runner};

pub struct RunOptions {
    /// Run only these stages (names or manifest stage names) and what they depend on.
    pub only: Vec<String>,
    /// Rerun these even when cached.
    pub force: Vec<String>,
    pub cpu_slots: u32,
    pub gpu_slots: u32,
    /// Where `out/<manifest>/<stage>` links are kept.
    pub out_dir: PathBuf,
    /// Where stages run: in this process, or as jobs on a cluster.
    pub runner: Arc<dyn Runner>,
}

/// Which nodes a run covers and which it must rerun regardless of the cache.
pub fn selection(plan: &Plan, only: &[String], force: &[String]) -> Result<(Vec<bool>, Vec<bool>), ManifestError> {
    let n = plan.nodes.len();
    let mut selected = vec![only.is_empty(); n];
    for sel in only {
        for i in plan.select(sel)? {
            selected[i] = true;
        }
    }
    for i in (0..n).rev() {
        if selected[i] {
            let ups: Vec<usize> = plan.nodes[i].upstream().collect();
            for u in ups {
                selected[u] = true;
            }
        }
    }
    let mut forced = vec![false; n];
    for sel in force {
        for i in plan.select(sel)? {
            forced[i] = true;
        }
    }
    Ok((selected, forced))
}

type Done = Option<Result<Digest, ()>>;

struct Shared {
    plan: Arc<Plan>,
    cache: Arc<Cache>,
    runner: Arc<dyn Runner>,
    reporter: Arc<dyn Reporter>,
    cancel: Arc<AtomicBool>,
    cpu: Semaphore,
    gpu: Semaphore,
    cpu_total: u32,
    gpu_total: u32,
    out_dir: PathBuf,
    done: Vec<watch::Sender<Done>>,
}

/// Runs the selected part of a plan and returns one outcome per stage, in plan order.
pub async fn run(
    plan: Arc<Plan>,
    cache: Arc<Cache>,
    opts: RunOptions,
    reporter: Arc<dyn Reporter>,
    cancel: Arc<AtomicBool>,
) -> Result<Vec<Outcome>, ManifestError> {
    let (selected, forced) = selection(&plan, &opts.only, &opts.force)?;
    let total = selected.iter().filter(|s| **s).count();
    reporter.event(Event::Planned { total });
    let shared = Arc::new(Shared {
        cpu: Semaphore::new(opts.cpu_slots.max(1) as usize),
        cpu_total: opts.cpu_slots.max(1),
        gpu: Semaphore::new(opts.gpu_slots as usize),
        gpu_total: opts.gpu_slots,
        done: (0..plan.nodes.len()).map(|_| watch::channel(None).0).collect(),
        runner: opts.runner,
        plan,
        cache,
        reporter,
        cancel,
        out_dir: opts.out_dir,
    });
    let mut tasks = Vec::new();
    for i in (0..shared.plan.nodes.len()).filter(|&i| selected[i]) {
        let shared = shared.clone();
        let force = forced[i];
        tasks.push(tokio::spawn(async move {
            let outcome = run_node(&shared, i, force).await;
            let done = match (&outcome.status, outcome.output) {
                (Status::Ran | Status::Cached, Some(d)) => Ok(d),
                _ => Err(()),
            };
            shared.done[i].send_replace(Some(done));
            shared.reporter.event(Event::Finished(&outcome));
            outcome
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("stage tasks do not panic; stage panics are caught"));
    }
    Ok(outcomes)
}

/// What a stage needs before it can run: its cached result, or the key's lock.
enum Ready {
    Cached(Digest),
    Run(KeyLock),
}

async fn run_node(shared: &Arc<Shared>, i: usize, force: bool) -> Outcome {
    let node = &shared.plan.nodes[i];
    let mut outcome = Outcome {
        stage: node.name.clone(),
        status: Status::Skipped,
        key: None,
        output: None,
        seconds: 0.0,
        error: None,
        failure: None,
        attempts: 0,
    };
    let mut outputs = BTreeMap::new();
    for u in node.upstream() {
        let mut rx = shared.done[u].subscribe();
        let done = *rx.wait_for(|d| d.is_some()).await.expect("senders live in Shared");
        match done {
            Some(Ok(d)) => {
                outputs.insert(u, d);
            }
            _ => {
                outcome.error = Some(format!("upstream `{}` did not finish", shared.plan.nodes[u].name));
                return outcome;
            }
        }
    }
    let preimage = shared.plan.preimage(i, &|u| outputs[&u]);
    let key = key_of(&preimage);
    outcome.key = Some(key.hex());
    let mut started = None;
    let (status, result) = run_keyed(shared, i, key, preimage, &outputs, force, &mut started).await;
    outcome.seconds = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    outcome.status = status;
    match result {
        Ok((output, attempts)) => {
            outcome.output = Some(output);
            outcome.attempts = attempts;
        }
        Err((failure, attempts)) => {
            outcome.attempts = attempts;
            outcome.failure = Some(failure.kind);
            outcome.error = Some(failure.to_string());
        }
    }
    outcome
}

type Attempted = Result<(Digest, u32), (Failure, u32)>;

/// Reuses the key's cached entry, or runs the stage (retrying as the manifest allows) and
/// publishes its output. `started` is set when the stage gets its slots.
async fn run_keyed(
    shared: &Arc<Shared>,
    i: usize,
    key: Digest,
    preimage: Value,
    outputs: &BTreeMap<usize, Digest>,
    force: bool,
    started: &mut Option<Instant>,
) -> (Status, Attempted) {
    let node = &shared.plan.nodes[i];
    let failed = |kind, msg: String| (Status::Failed, Err((Failure::new(kind, msg), 0)));
    let res = &node.resources;
    // Slots bound what runs in this process; a cluster's scheduler bounds its own jobs, and the
    // executor keeps at most `cpu_slots` of them submitted at once.
    let _slots = if shared.runner.is_local() {
        if res.gpu > shared.gpu_total {
            return failed(
                FailureKind::Failed,
                format!(
                    "needs {} GPU slot(s) but this run has {}; pass --gpus or run the stage on cpu",
                    res.gpu, shared.gpu_total
                ),
            );
        }
        // A stage asking for more cores than the run has gets them all rather than waiting
        // forever.
        let cpu = shared
            .cpu
            .acquire_many(res.cpu.clamp(1, shared.cpu_total))
            .await
            .expect("semaphore open");
        let gpu = match res.gpu {
            0 => None,
            n => Some(shared.gpu.acquire_many(n).await.expect("semaphore open")),
        };
        (cpu, gpu)
    } else {
        (shared.cpu.acquire().await.expect("semaphore open"), None)
    };
    *started = Some(Instant::now());
    if shared.cancel.load(Ordering::Relaxed) {
        return (
            Status::Skipped,
            Err((Failure::new(FailureKind::Cancelled, "interrupted"), 0)),
        );
    }
    let ready = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || ready(&shared, i, key, force)).await
    };
    let _lock = match ready {
        Ok(Ok(Ready::Cached(output))) => return (Status::Cached, Ok((output, 0))),
        Ok(Ok(Ready::Run(lock))) => lock,
        Ok(Err(e)) => return failed(FailureKind::Failed, e),
        Err(join) => return failed(FailureKind::Failed, format!("stage task aborted: {join}")),
    };
    shared.reporter.event(Event::Started { stage: &node.name });
    let mut job = job_of(shared, i, key, preimage, outputs);
    let progress: Arc<dyn ProgressSink> = Arc::new(StageProgress {
        stage: node.name.clone(),
        reporter: shared.reporter.clone(),
    });
    let attempts = node.retries + 1;
    let output = loop {
        let attempt = job.attempt;
        let result = shared
            .runner
            .run(job.clone(), node.kind.clone(), progress.clone(), shared.cancel.clone())
            .await;
        match result {
            Ok(output) => break output,
            // A job cancelled on the cluster by someone else is a failure, retried like any.
            Err(_) if shared.cancel.load(Ordering::Relaxed) => {
                return (
                    Status::Interrupted,
                    Err((Failure::new(FailureKind::Cancelled, "interrupted"), attempt)),
                );
            }
            Err(f) if attempt < attempts => {
                job.resources = f.kind.retried(&job.resources, &f.granted);
                job.attempt += 1;
                progress.notice(&format!(
                    "attempt {attempt} of {attempts} {}: {}; retrying{}",
                    f.kind.describe(),
                    f.message,
                    describe_scaled(&f.granted, &job.resources, f.kind)
                ));
            }
            Err(f) => return (Status::Failed, Err((f, attempt))),
        }
    };
    let published = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || {
            let entry = match shared.cache.entry(&key) {
                Ok(Some(entry)) if entry.output == output => entry,
                Ok(_) => return Err("the job reported success but its cache entry is missing or another".into()),
                Err(e) => return Err(format!("reading the committed entry: {e}")),
            };
            publish(&shared, i, &entry).map_err(|e| format!("publishing outputs: {e}"))
        })
        .await
    };
    match published {
        Ok(Ok(())) => (Status::Ran, Ok((output, job.attempt))),
        Ok(Err(e)) => (Status::Failed, Err((Failure::new(FailureKind::Failed, e), job.attempt))),
        Err(join) => failed(FailureKind::Failed, format!("publishing aborted: {join}")),
    }
}

/// ", with 2048M of memory" when a retry asks for more than the failed attempt had.
fn describe_scaled(granted: &Resources, next: &Resources, why: FailureKind) -> String {
    match why {
        FailureKind::OutOfMemory => next
            .memory_mb
            .filter(|m| Some(*m) != granted.memory_mb)
            .map(|m| format!(" with {m}M of memory"))
            .unwrap_or_default(),
        FailureKind::TimedOut => next
            .time_s
            .map(|t| format!(" with {t}s of wall time"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The key's cached result, or its lock. Blocking.
fn ready(shared: &Shared, i: usize, key: Digest, force: bool) -> Result<Ready, String> {
    let node = &shared.plan.nodes[i];
    let cache = &shared.cache;
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let reuse = || -> Result<Option<Digest>, String> {
        if force {
            return Ok(None);
        }
        match cache.find(&key).map_err(|e| err("cache lookup", &e))? {
            Found::Miss => Ok(None),
            Found::Hit(entry) => {
                publish(shared, i, &entry).map_err(|e| err("publishing outputs", &e))?;
                Ok(Some(entry.output))
            }
            Found::Damaged(entry, what) => {
                shared.reporter.event(Event::Notice {
                    stage: &node.name,
                    text: &format!("cached result not used: {what}; recomputing"),
                });
                cache
                    .discard_artifact(&entry.output)
                    .map_err(|e| err("discarding damaged outputs", &e))?;
                Ok(None)
            }
        }
    };
    // Entries appear by atomic rename, so a hit needs no lock; a miss takes the key's lock and
    // looks again, since another process may have committed the key while this one waited.
    if let Some(output) = reuse()? {
        return Ok(Ready::Cached(output));
    }
    let lock = cache.lock_key(&key).map_err(|e| err("cache lock", &e))?;
    if let Some(output) = reuse()? {
        return Ok(Ready::Cached(output));
    }
    Ok(Ready::Run(lock))
}

/// The job description of node `i`, its inputs bound to the outputs of its upstream stages.
fn job_of(shared: &Shared, i: usize, key: Digest, preimage: Value, outputs: &BTreeMap<usize, Digest>) -> Job {
    let plan = &shared.plan;
    let node = &plan.nodes[i];
    let cache = &shared.cache;
    let mut inputs: BTreeMap<String, Vec<JobInput>> = BTreeMap::new();
    for (slot, sources) in &node.inputs {
        let list = inputs.entry(slot.clone()).or_default();
        for s in sources {
            list.push(match s {
                Source::Node(u) => {
                    let d = outputs[u];
                    JobInput {
                        artifact: InputArtifact {
                            path: cache.artifact_path(&d),
                            digest: d,
                            labels: plan.nodes[*u]
                                .labels
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect(),
                            stage: node.kind.reads_upstream_names().then(|| plan.nodes[*u].base.clone()),
                        },
                        from: InputOrigin::Stage {
                            stage: plan.nodes[*u].name.clone(),
                        },
                    }
                }
                Source::Path { path, digest } => JobInput {
                    artifact: InputArtifact {
                        path: path.clone(),
                        digest: *digest,
                        labels: BTreeMap::new(),
                        stage: None,
                    },
                    from: InputOrigin::Path { path: path.clone() },
                },
            });
        }
    }
    Job {
        stage: node.name.clone(),
        manifest: plan.manifest_name.clone(),
        kind: node.kind.kind().to_string(),
        stage_version: node.kind.version(),
        params: node.params.clone(),
        labels: node.labels.clone(),
        environment: node.environment.clone(),
        inputs,
        key,
        preimage,
        cache: std::path::absolute(cache.root()).unwrap_or_else(|_| cache.root().to_path_buf()),
        resources: node.resources.clone(),
        attempt: 1,
    }
}

/// Records the stage's latest entry (to explain later reruns) and points `out/<manifest>/<stage>`
/// at its outputs, replacing the link atomically. A no-op when both are already current, so an
/// all-cached rerun writes nothing.
fn publish(shared: &Shared, i: usize, entry: &ActionEntry) -> std::io::Result<()> {
    let plan = &shared.plan;
    let name = &plan.nodes[i].name;
    // Both become path parts: each must be one plain folder name, so no write leaves out/.
    for part in [plan.manifest_name.as_str(), name.as_str()] {
        let mut parts = Path::new(part).components();
        if !matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        ) {
            return Err(std::io::Error::other(format!("`{part}` is not a plain folder name")));
        }
    }
    let dir = shared.out_dir.join(&plan.manifest_name);
    let link = dir.join(name);
    let provenance = dir.join(Published::file_name(name));
    let target = std::path::absolute(shared.cache.artifact_path(&entry.output))?;
    let key = entry.key.hex();
    let recorded = shared.cache.record(&plan.manifest_name, name);
    let up_to_date = std::fs::read_link(&link).is_ok_and(|t| t == target)
        && provenance.is_file()
        && recorded.as_ref().and_then(|r| r.get("key")).and_then(|k| k.as_str()) == Some(key.as_str());
    if up_to_date {
        return Ok(());
    }
    shared
        .cache
        .put_record(
            &plan.manifest_name,
            name,
            &json!({"key": entry.key, "preimage": entry.preimage}),
        )
        .map_err(std::io::Error::other)?;
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp)?;
    std::fs::rename(&tmp, &link)?;
    let record = Published {
        key: entry.key,
        output: entry.output,
        path: target,
        preimage: entry.preimage.clone(),
        provenance: serde_json::from_value(entry.provenance.clone()).map_err(std::io::Error::other)?,
    };
    write_atomic(&provenance, &serde_json::to_vec_pretty(&record)?)
}
