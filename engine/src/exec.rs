//! Runs a plan: stale stages execute concurrently within CPU/GPU slots, every output is
//! committed to the cache, and a failure stops only the stages that depend on it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use secvec_cache::{hash_path, key_of, ActionEntry, Cache, Digest, Found};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use crate::error::ManifestError;
use crate::plan::{differences, Plan, Source};
use crate::progress::{Event, Outcome, Reporter, StageProgress, Status};
use crate::provenance::{Host, InputOrigin, Provenance, ProvenanceInput, Published};
use crate::stage::{InputArtifact, StageContext};

pub struct RunOptions {
    /// Run only these stages (names or manifest stage names) and what they depend on.
    pub only: Vec<String>,
    /// Rerun these even when cached.
    pub force: Vec<String>,
    pub cpu_slots: u32,
    pub gpu_slots: u32,
    /// Where `out/<manifest>/<stage>` links are kept.
    pub out_dir: PathBuf,
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

async fn run_node(shared: &Arc<Shared>, i: usize, force: bool) -> Outcome {
    let node = &shared.plan.nodes[i];
    let mut outcome = Outcome {
        stage: node.name.clone(),
        status: Status::Skipped,
        key: None,
        output: None,
        seconds: 0.0,
        error: None,
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
    let res = node.resources;
    // A stage asking for more cores than the run has gets them all rather than waiting forever.
    let _cpu = shared
        .cpu
        .acquire_many(res.cpu.clamp(1, shared.cpu_total))
        .await
        .expect("semaphore open");
    if res.gpu > shared.gpu_total {
        outcome.status = Status::Failed;
        outcome.error = Some(format!(
            "needs {} GPU slot(s) but this run has {}; pass --gpus or run the stage on cpu",
            res.gpu, shared.gpu_total
        ));
        return outcome;
    }
    let _gpu = match res.gpu {
        0 => None,
        n => Some(shared.gpu.acquire_many(n).await.expect("semaphore open")),
    };
    if shared.cancel.load(Ordering::Relaxed) {
        outcome.error = Some("interrupted".into());
        return outcome;
    }
    let started = Instant::now();
    let shared2 = shared.clone();
    let inner = tokio::task::spawn_blocking(move || execute(&shared2, i, key, preimage, &outputs, force)).await;
    outcome.seconds = started.elapsed().as_secs_f64();
    match inner {
        Ok(Ok((status, output))) => {
            outcome.status = status;
            outcome.output = Some(output);
        }
        // A stage stopped by the interrupt reports an error of its own; what happened is the
        // interrupt.
        Ok(Err(_)) if shared.cancel.load(Ordering::Relaxed) => {
            outcome.status = Status::Interrupted;
            outcome.error = Some("interrupted".into());
        }
        Ok(Err(e)) => {
            outcome.status = Status::Failed;
            outcome.error = Some(e);
        }
        Err(join) => {
            outcome.status = Status::Failed;
            outcome.error = Some(format!("stage task aborted: {join}"));
        }
    }
    outcome
}

/// Reuses the key's cached entry, or runs the stage and commits its outputs. Blocking.
fn execute(
    shared: &Shared,
    i: usize,
    key: Digest,
    preimage: Value,
    outputs: &BTreeMap<usize, Digest>,
    force: bool,
) -> Result<(Status, Digest), String> {
    let plan = &shared.plan;
    let node = &plan.nodes[i];
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
        return Ok((Status::Cached, output));
    }
    let _lock = cache.lock_key(&key).map_err(|e| err("cache lock", &e))?;
    if let Some(output) = reuse()? {
        return Ok((Status::Cached, output));
    }
    shared.reporter.event(Event::Started { stage: &node.name });
    let staging = cache.staging().map_err(|e| err("cache staging", &e))?;
    let mut inputs: BTreeMap<String, Vec<InputArtifact>> = BTreeMap::new();
    let mut provenance_inputs = Vec::new();
    for (slot, sources) in &node.inputs {
        let list = inputs.entry(slot.clone()).or_default();
        for s in sources {
            let (artifact, from) = match s {
                Source::Node(u) => {
                    let d = outputs[u];
                    let labels = plan.nodes[*u]
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    (
                        InputArtifact {
                            path: cache.artifact_path(&d),
                            digest: d,
                            labels,
                            stage: node.kind.reads_upstream_names().then(|| plan.nodes[*u].base.clone()),
                        },
                        InputOrigin::Stage {
                            stage: plan.nodes[*u].name.clone(),
                        },
                    )
                }
                Source::Path { path, digest } => (
                    InputArtifact {
                        path: path.clone(),
                        digest: *digest,
                        labels: BTreeMap::new(),
                        stage: None,
                    },
                    InputOrigin::Path { path: path.clone() },
                ),
            };
            provenance_inputs.push(ProvenanceInput {
                slot: slot.clone(),
                from,
                digest: artifact.digest,
            });
            list.push(artifact);
        }
    }
    // The inputs must still be the bytes the key was computed from: a stored tree or a
    // `{path:}` input changed since it was hashed would make this output a lie.
    for (slot, list) in &inputs {
        for artifact in list {
            let now = hash_path(&artifact.path).map_err(|e| err(&format!("re-hashing input `{slot}`"), &e))?;
            if now != artifact.digest {
                let stored = artifact.path.starts_with(cache.root());
                if stored {
                    let _ = cache.discard_artifact(&artifact.digest);
                }
                return Err(format!(
                    "input `{slot}` ({}) changed since it was hashed ({} → {}){}",
                    artifact.path.display(),
                    artifact.digest.short(),
                    now.short(),
                    if stored {
                        "; the damaged stored copy was removed: run again to recompute it"
                    } else {
                        ": run again"
                    }
                ));
            }
        }
    }
    let progress = Arc::new(StageProgress {
        stage: node.name.clone(),
        reporter: shared.reporter.clone(),
    });
    let ctx = StageContext::new(
        inputs,
        staging.out().to_path_buf(),
        cache.scratch_dir(&key),
        cache.memo(),
        progress,
        shared.cancel.clone(),
    );
    let started_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let t0 = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.kind.run(&node.params, &ctx)));
    let seconds = t0.elapsed().as_secs_f64();
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("{e:#}")),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            return Err(format!("stage panicked: {msg}"));
        }
    }
    drop(ctx);
    let output = cache.commit(staging).map_err(|e| err("committing outputs", &e))?;
    cache.remove_scratch(&key);
    let provenance = Provenance {
        stage: node.name.clone(),
        manifest: plan.manifest_name.clone(),
        kind: node.kind.kind().to_string(),
        stage_version: node.kind.version(),
        secvec_version: env!("CARGO_PKG_VERSION").to_string(),
        params: node.params.clone(),
        labels: node.labels.clone(),
        environment: node.environment.clone(),
        inputs: provenance_inputs,
        host: Host::this(),
        started_at_unix: started_at,
        seconds,
    };
    let provenance = serde_json::to_value(&provenance).map_err(|e| err("recording provenance", &e))?;
    let entry = ActionEntry {
        key,
        output,
        preimage,
        provenance,
    };
    cache.put_entry(&entry).map_err(|e| err("writing cache entry", &e))?;
    publish(shared, i, &entry).map_err(|e| err("publishing outputs", &e))?;
    Ok((Status::Ran, output))
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

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// What `secvec plan` shows for one stage.
#[derive(Debug, serde::Serialize)]
pub struct PlanRow {
    pub stage: String,
    pub kind: String,
    /// `cached` or `run`.
    pub action: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub why: String,
    /// The cache key, when it can be known before running (every input is cached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Predicts a run without executing anything: which stages are cached, and why each other
/// stage would run. Stages below one that must run are reported as waiting on it, since their
/// key depends on bytes not produced yet.
pub fn explain(
    plan: &Plan,
    cache: Option<&Cache>,
    only: &[String],
    force: &[String],
) -> Result<Vec<PlanRow>, ManifestError> {
    let (selected, forced) = selection(plan, only, force)?;
    let mut known: Vec<Option<Digest>> = vec![None; plan.nodes.len()];
    let mut rows = Vec::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        if !selected[i] {
            continue;
        }
        let stale_up: Vec<&str> = node
            .upstream()
            .filter(|u| known[*u].is_none())
            .map(|u| plan.nodes[u].name.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut key = None;
        let (action, why) = if let Some(first) = stale_up.iter().min() {
            ("run", format!("upstream `{first}` will run"))
        } else {
            let preimage = plan.preimage(i, &|u| known[u].expect("checked above"));
            let k = key_of(&preimage);
            key = Some(k.hex());
            let key = k;
            let found = cache.map(|c| c.find(&key)).transpose().ok().flatten();
            match (found, forced[i]) {
                (Some(Found::Hit(_)), true) => ("run", "forced".to_string()),
                (Some(Found::Hit(entry)), false) => {
                    known[i] = Some(entry.output);
                    ("cached", String::new())
                }
                (Some(Found::Damaged(_, what)), _) => ("run", format!("cached result not usable: {what}")),
                (Some(Found::Miss) | None, _) => {
                    // A renamed run with no record of this stage compares with the base run's.
                    let own = cache.and_then(|c| c.record(&plan.manifest_name, &node.name));
                    let (previous, base) = match own {
                        Some(r) => (Some(r), None),
                        None if plan.base_name != plan.manifest_name => (
                            cache.and_then(|c| c.record(&plan.base_name, &node.name)),
                            Some(&plan.base_name),
                        ),
                        None => (None, None),
                    };
                    let changes: Vec<String> = previous
                        .as_ref()
                        .and_then(|p| p.get("preimage"))
                        .map(|old| differences(old, &preimage))
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(path, old, new)| describe_change(plan, i, &path, &old, &new))
                        .collect();
                    let why = match (changes.is_empty(), base) {
                        (true, _) => "not cached".to_string(),
                        (false, None) => changes.join("; "),
                        (false, Some(base)) => format!("unlike `{base}`'s {}: {}", node.name, changes.join("; ")),
                    };
                    ("run", why)
                }
            }
        };
        rows.push(PlanRow {
            stage: node.name.clone(),
            kind: node.kind.kind().to_string(),
            action: action.into(),
            why,
            key,
        });
    }
    Ok(rows)
}

fn describe_change(plan: &Plan, i: usize, path: &str, old: &str, new: &str) -> String {
    if let Some(rest) = path.strip_prefix("inputs.") {
        let slot = rest.split(['[', '.']).next().unwrap_or(rest);
        let idx: usize = rest
            .split_once('[')
            .and_then(|(_, r)| r.split(']').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let from = plan.nodes[i]
            .inputs
            .iter()
            .find(|(s, _)| s == slot)
            .and_then(|(_, sources)| sources.get(idx))
            .map(|s| match s {
                Source::Node(u) => format!("output of `{}`", plan.nodes[*u].name),
                Source::Path { path, .. } => format!("{}", path.display()),
            })
            .unwrap_or_default();
        return format!("input `{slot}` changed ({from}: {old} → {new})");
    }
    if let Some(what) = path.strip_prefix("environment") {
        return match what.trim_start_matches('.') {
            "" => format!("environment changed: {old} → {new}"),
            what => format!("environment changed: {what}: {old} → {new}"),
        };
    }
    format!("{path}: {old} → {new}")
}
