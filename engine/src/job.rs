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
use secvec_cache::{hash_path, ActionEntry, Cache, CacheError, Digest};
use secvec_stage::{DynStage, InputArtifact, ProgressSink, Registry, Resources, StageContext};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::provenance::{Host, InputOrigin, Provenance, ProvenanceInput};

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
    /// What `job` came to after `seconds` on this machine.
    pub fn of(job: &Job, outcome: &Result<Digest, JobError>, seconds: f64) -> JobResult {
        JobResult {
            stage: job.stage.clone(),
            key: job.key,
            attempt: job.attempt,
            output: outcome.as_ref().ok().copied(),
            error: outcome.as_ref().err().map(ToString::to_string),
            seconds,
            host: Host::this().hostname,
        }
    }

    pub fn read(path: &Path) -> std::io::Result<JobResult> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
    }

    /// Writes by rename, so a reader sees the whole result or none.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        secvec_cache::write_atomic(path, &serde_json::to_vec_pretty(self)?)
    }
}

/// Why a job did not commit an output.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a job description: {source}")]
    NotAJob { path: PathBuf, source: serde_json::Error },
    #[error("this secvec does not know stage kind `{0}`; run the job with the secvec that made it")]
    UnknownKind(String),
    #[error(
        "kind `{kind}` is version {here} in this secvec but the job was made for version {job}; run it with the \
         secvec that made it"
    )]
    OtherVersion { kind: String, here: u32, job: u32 },
    #[error("stage `{stage}` cannot run on this machine: {why}")]
    CannotSettle { stage: String, why: String },
    #[error(
        "this machine ({host}) differs from the one that planned stage `{stage}`: {here} here, {there} there; run \
         the stage where the tools match, or plan the run on such a machine"
    )]
    OtherEnvironment {
        host: String,
        stage: String,
        here: Value,
        there: Value,
    },
    #[error("opening cache {path}: {source}")]
    OpenCache { path: PathBuf, source: CacheError },
    #[error("{what}: {source}")]
    Cache { what: &'static str, source: CacheError },
    #[error("re-hashing input `{slot}`: {source}")]
    Rehash { slot: String, source: std::io::Error },
    #[error("input `{slot}` ({}) changed since it was hashed ({} → {}){}", .path.display(), .was.short(), .now.short(),
        if *.stored { "; the damaged stored copy was removed: run again to recompute it" } else { ": run again" })]
    InputChanged {
        slot: String,
        path: PathBuf,
        was: Digest,
        now: Digest,
        stored: bool,
    },
    /// The stage's own error, with its context chain.
    #[error("{0}")]
    Failed(String),
    #[error("stage panicked: {0}")]
    Panicked(String),
    #[error("recording provenance: {0}")]
    Provenance(serde_json::Error),
}

impl Job {
    pub fn read(path: &Path) -> Result<Job, JobError> {
        let bytes = std::fs::read(path).map_err(|source| JobError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| JobError::NotAJob {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The kind this job runs, from a binary's registry.
    pub fn kind_in(&self, registry: &Registry) -> Result<Arc<dyn DynStage>, JobError> {
        let kind = registry
            .get(&self.kind)
            .ok_or_else(|| JobError::UnknownKind(self.kind.clone()))?;
        if kind.version() != self.stage_version {
            return Err(JobError::OtherVersion {
                kind: self.kind.clone(),
                here: kind.version(),
                job: self.stage_version,
            });
        }
        Ok(kind)
    }

    /// Opens the cache the job commits into.
    pub fn open_cache(&self) -> Result<Cache, JobError> {
        Cache::open(&self.cache).map_err(|source| JobError::OpenCache {
            path: self.cache.clone(),
            source,
        })
    }

    /// Settles the params on this machine and fails unless it finds the environment the key
    /// was computed for: a result made with other tools or another GPU model must not be cached
    /// under this key.
    pub fn check_environment(&self, kind: &dyn DynStage) -> Result<(), JobError> {
        let here = kind.settle(&self.params).map_err(|e| JobError::CannotSettle {
            stage: self.stage.clone(),
            why: format!("{e:#}"),
        })?;
        if here.environment != self.environment {
            return Err(JobError::OtherEnvironment {
                host: Host::this().hostname,
                stage: self.stage.clone(),
                here: here.environment,
                there: self.environment.clone(),
            });
        }
        Ok(())
    }

    /// Runs the job as a cluster node or `secvec-worker` does: with this binary's kind, on this
    /// machine once it is found to match the planner's, into the job's cache.
    pub fn execute(
        &self,
        registry: &Registry,
        progress: Arc<dyn ProgressSink>,
        cancel: Arc<AtomicBool>,
    ) -> Result<Digest, JobError> {
        let kind = self.kind_in(registry)?;
        self.check_environment(kind.as_ref())?;
        self.run(kind.as_ref(), &self.open_cache()?, progress, cancel)
    }

    /// Runs the stage and commits its output and cache entry. Blocking. The caller holds the
    /// key's lock (or knows no other process computes this key).
    pub fn run(
        &self,
        kind: &dyn DynStage,
        cache: &Cache,
        progress: Arc<dyn ProgressSink>,
        cancel: Arc<AtomicBool>,
    ) -> Result<Digest, JobError> {
        let cache_err = |what: &'static str| move |source| JobError::Cache { what, source };
        let staging = cache.staging().map_err(cache_err("cache staging"))?;
        // The inputs must still be the bytes the key was computed from: a stored tree or a
        // `{path:}` input changed since it was hashed would make this output a lie.
        for (slot, list) in &self.inputs {
            for input in list {
                let a = &input.artifact;
                let now = hash_path(&a.path).map_err(|source| JobError::Rehash {
                    slot: slot.clone(),
                    source,
                })?;
                if now != a.digest {
                    let stored = a.path.starts_with(cache.root());
                    if stored {
                        let _ = cache.discard_artifact(&a.digest);
                    }
                    return Err(JobError::InputChanged {
                        slot: slot.clone(),
                        path: a.path.clone(),
                        was: a.digest,
                        now,
                        stored,
                    });
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
        )
        .declaring(kind.result_fields(&self.params));
        let started_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let t0 = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kind.run(&self.params, &ctx)));
        let seconds = t0.elapsed().as_secs_f64();
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(JobError::Failed(format!("{e:#}"))),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                return Err(JobError::Panicked(msg));
            }
        }
        drop(ctx);
        let output = cache.commit(staging).map_err(cache_err("committing outputs"))?;
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
        let provenance = serde_json::to_value(&provenance).map_err(JobError::Provenance)?;
        let entry = ActionEntry {
            key: self.key,
            output,
            preimage: self.preimage.clone(),
            provenance,
        };
        cache.put_entry(&entry).map_err(cache_err("writing cache entry"))?;
        Ok(output)
    }
}
