//! One stage's invocation as data: what the executor hands a runner, and what `secvec run-stage
//! JOB.json` executes on any machine that sees the cache. A job runs the stage into a private
//! staging folder, commits the output tree and the cache entry, and reports the output's digest;
//! the executor that made the job holds the key's lock and publishes the result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use indexmap::IndexMap;
use secvec_cache::{hash_path, ActionEntry, Cache, Digest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::provenance::{Host, InputOrigin, Provenance, ProvenanceInput};
use crate::resources::Resources;
use crate::stage::{DynStage, InputArtifact, ProgressSink, Registry, StageContext};

/// A stage's invocation: kind, resolved params, input artifacts and where they came from, and
/// the key its output is committed under.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// The concrete stage (`stage` or `stage@k=v`).
    pub stage: String,
    pub manifest: String,
    pub kind: String,
    pub stage_version: u32,
    /// Params as the plan settled them (defaults applied, `auto` resolved).
    pub params: Value,
    pub labels: IndexMap<String, String>,
    /// The tools and environment the key was computed for; a job on another machine checks
    /// that it finds the same.
    pub environment: Value,
    pub inputs: BTreeMap<String, Vec<JobInput>>,
    pub key: Digest,
    pub preimage: Value,
    /// The cache the job reads its inputs from and commits its output to.
    pub cache: PathBuf,
    pub resources: Resources,
    /// 1 for the first try, 2 for the first retry, …
    pub attempt: u32,
}

/// One input artifact of a job, with where it came from (for provenance).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobInput {
    #[serde(flatten)]
    pub artifact: InputArtifact,
    pub from: InputOrigin,
}

/// What a finished job reports: written atomically by `secvec run-stage --result` as its last
/// act, so that a scheduler's executor can tell a job that finished from one that died.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobResult {
    pub stage: String,
    pub key: Digest,
    pub attempt: u32,
    /// The committed output tree; `None` when the stage failed.
    pub output: Option<Digest>,
    pub error: Option<String>,
    pub seconds: f64,
    pub host: String,
}

impl JobResult {
    pub fn read(path: &Path) -> std::io::Result<JobResult> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
    }

    /// Writes by rename, so a reader sees the whole result or none.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::exec::write_atomic(path, &serde_json::to_vec_pretty(self)?)
    }
}

impl Job {
    pub fn read(path: &Path) -> Result<Job, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{} is not a job description: {e}", path.display()))
    }

    /// The kind this job runs, from a binary's registry.
    pub fn kind_in(&self, registry: &Registry) -> Result<Arc<dyn DynStage>, String> {
        let kind = registry.get(&self.kind).ok_or_else(|| {
            format!(
                "this secvec does not know stage kind `{}`; run the job with the secvec that made it",
                self.kind
            )
        })?;
        if kind.version() != self.stage_version {
            return Err(format!(
                "kind `{}` is version {} in this secvec but the job was made for version {}; run it \
                 with the secvec that made it",
                self.kind,
                kind.version(),
                self.stage_version
            ));
        }
        Ok(kind)
    }

    /// Settles the params on this machine and fails unless it finds the environment the key
    /// was computed for: a result made with other tools or another GPU model must not be cached
    /// under this key.
    pub fn check_environment(&self, kind: &dyn DynStage) -> Result<(), String> {
        let here = kind
            .settle(&self.params)
            .map_err(|e| format!("stage `{}` cannot run on this machine: {e:#}", self.stage))?;
        if here.environment != self.environment {
            return Err(format!(
                "this machine ({}) differs from the one that planned stage `{}`: {} here, {} there; \
                 run the stage where the tools match, or plan the run on such a machine",
                Host::this().hostname,
                self.stage,
                here.environment,
                self.environment
            ));
        }
        Ok(())
    }

    /// Runs the stage and commits its output and cache entry. Blocking. The caller holds the
    /// key's lock (or knows no other process computes this key).
    pub fn run(
        &self,
        kind: &dyn DynStage,
        cache: &Cache,
        progress: Arc<dyn ProgressSink>,
        cancel: Arc<AtomicBool>,
    ) -> Result<Digest, String> {
        let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
        let staging = cache.staging().map_err(|e| err("cache staging", &e))?;
        // The inputs must still be the bytes the key was computed from: a stored tree or a
        // `{path:}` input changed since it was hashed would make this output a lie.
        for (slot, list) in &self.inputs {
            for input in list {
                let a = &input.artifact;
                let now = hash_path(&a.path).map_err(|e| err(&format!("re-hashing input `{slot}`"), &e))?;
                if now != a.digest {
                    let stored = a.path.starts_with(cache.root());
                    if stored {
                        let _ = cache.discard_artifact(&a.digest);
                    }
                    return Err(format!(
                        "input `{slot}` ({}) changed since it was hashed ({} → {}){}",
                        a.path.display(),
                        a.digest.short(),
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
        let inputs = self
            .inputs
            .iter()
            .map(|(slot, list)| (slot.clone(), list.iter().map(|i| i.artifact.clone()).collect()))
            .collect();
        let ctx = StageContext::new(
            inputs,
            staging.out().to_path_buf(),
            cache.scratch_dir(&self.key),
            cache.memo(),
            progress,
            cancel,
        );
        let started_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let t0 = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kind.run(&self.params, &ctx)));
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
        cache.remove_scratch(&self.key);
        let provenance = Provenance {
            stage: self.stage.clone(),
            manifest: self.manifest.clone(),
            kind: self.kind.clone(),
            stage_version: self.stage_version,
            secvec_version: env!("CARGO_PKG_VERSION").to_string(),
            params: self.params.clone(),
            labels: self.labels.clone(),
            environment: self.environment.clone(),
            inputs: self
                .inputs
                .iter()
                .flat_map(|(slot, list)| {
                    list.iter().map(|i| ProvenanceInput {
                        slot: slot.clone(),
                        from: i.from.clone(),
                        digest: i.artifact.digest,
                    })
                })
                .collect(),
            host: Host::this(),
            started_at_unix: started_at,
            seconds,
        };
        let provenance = serde_json::to_value(&provenance).map_err(|e| err("recording provenance", &e))?;
        let entry = ActionEntry {
            key: self.key,
            output,
            preimage: self.preimage.clone(),
            provenance,
        };
        cache.put_entry(&entry).map_err(|e| err("writing cache entry", &e))?;
        Ok(output)
    }
}
