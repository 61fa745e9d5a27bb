//! Runs each job as a Slurm batch job on a cluster that shares the cache's filesystem.
//!
//! A job's files live in `<cache>/jobs/<key>/`: the job description per attempt, the batch
//! script, the job's log (`<jobid>.log`), the id of the job last submitted for the key, and the
//! result the job writes by rename as its last act (`<jobid>.result.json`). That result is how
//! the executor learns a job finished (as Nextflow's `.exitcode`); `squeue`, then `scontrol` and
//! `sacct` say why a job that left none ended. An executor restarted after dying finds the job id
//! and waits on a job still queued or running instead of submitting it again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secvec_cache::{write_atomic, Cache, Digest};
use secvec_stage::{DynStage, ProgressSink, Resources};
use serde::{Deserialize, Serialize};
use tokio::process::Command;
use tokio::sync::Mutex;

use super::{tail, Failure, FailureKind, JobFuture, Runner};
use crate::job::{Job, JobResult};

/// How the executor submits to Slurm.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Further `sbatch` arguments, as given (`--qos=high`).
    pub sbatch_args: Vec<String>,
    /// The secvec binary the jobs run (`secvec run-stage`); the nodes must see it at this path.
    pub secvec: PathBuf,
    /// How often job results and queue states are looked at.
    pub poll: Duration,
}

pub struct Slurm {
    options: SlurmOptions,
    /// `<cache>/jobs`, absolute, since jobs start in whatever folder the cluster gives them.
    jobs: PathBuf,
    /// Cores of the partition's largest node: what a stage asking for every core gets.
    node_cpus: u32,
    /// The states `squeue` last listed for this user's jobs, shared by every waiting job so that
    /// a thousand jobs in flight cost one `squeue` per poll.
    queue: Mutex<Option<(Instant, HashMap<String, String>)>>,
}

/// The job last submitted for a key: what a restarted executor adopts.
#[derive(Debug, Serialize, Deserialize)]
struct Submitted {
    job_id: String,
    attempt: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("`{command}` could not be run ({source}); is Slurm's client installed and on PATH?")]
    Missing { command: String, source: std::io::Error },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

async fn output(program: &str, args: &[String]) -> Result<String, SlurmError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|source| SlurmError::Missing {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(SlurmError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Slurm {
    /// Checks that a Slurm controller answers and learns the partition's node size.
    pub async fn connect(options: SlurmOptions, cache: Arc<Cache>) -> Result<Slurm, SlurmError> {
        let mut args = vec!["-h".to_string(), "-o".into(), "%c".into()];
        if let Some(p) = &options.partition {
            args.push(format!("--partition={p}"));
        }
        let cpus = output("sinfo", &args).await?;
        let node_cpus = cpus
            .lines()
            .filter_map(|l| l.trim().trim_end_matches('+').parse::<u32>().ok())
            .max()
            .ok_or_else(|| SlurmError::Failed {
                command: format!("sinfo {}", args.join(" ")),
                stderr: format!(
                    "no nodes{}",
                    options
                        .partition
                        .as_ref()
                        .map(|p| format!(" in partition `{p}`"))
                        .unwrap_or_default()
                ),
            })?;
        let root = std::path::absolute(cache.root()).unwrap_or_else(|_| cache.root().to_path_buf());
        Ok(Slurm {
            options,
            jobs: root.join("jobs"),
            node_cpus,
            queue: Mutex::new(None),
        })
    }

    fn dir(&self, key: &Digest) -> PathBuf {
        self.jobs.join(key.hex())
    }

    /// `sbatch` options for one attempt's resources.
    fn resource_args(&self, r: &Resources) -> Vec<String> {
        let mut args = vec![format!("--cpus-per-task={}", r.cpu.clamp(1, self.node_cpus))];
        if let Some(m) = r.memory_mb {
            args.push(format!("--mem={m}M"));
        }
        if r.gpu > 0 {
            args.push(match &r.gpu_type {
                Some(t) => format!("--gres=gpu:{t}:{}", r.gpu),
                None => format!("--gres=gpu:{}", r.gpu),
            });
        }
        if let Some(t) = r.time_s {
            args.push(format!("--time={}", t.div_ceil(60)));
        }
        args
    }

    async fn submit(&self, job: &Job, dir: &Path) -> Result<String, String> {
        let io = |what: &str, e: std::io::Error| format!("{what} in {}: {e}", dir.display());
        let attempt = job.attempt;
        let spec = dir.join(format!("attempt-{attempt}.json"));
        write_atomic(&spec, &serde_json::to_vec_pretty(job).expect("jobs serialise"))
            .map_err(|e| io("writing the job", e))?;
        let script = dir.join(format!("attempt-{attempt}.sh"));
        let body = format!(
            "#!/bin/sh\nexec {secvec} run-stage {spec} --result {dir}/\"$SLURM_JOB_ID\".result.json\n",
            secvec = quote(&self.options.secvec),
            spec = quote(&spec),
            dir = quote(dir),
        );
        write_atomic(&script, body.as_bytes()).map_err(|e| io("writing the batch script", e))?;
        let cwd = std::env::current_dir().map_err(|e| format!("this process's folder: {e}"))?;
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name=secvec-{}", job.key.short()),
            format!("--output={}/%j.log", dir.display()),
            format!("--chdir={}", cwd.display()),
            format!("--comment=secvec {}", job.stage),
        ];
        args.extend(self.resource_args(&job.resources));
        if let Some(p) = &self.options.partition {
            args.push(format!("--partition={p}"));
        }
        if let Some(a) = &self.options.account {
            args.push(format!("--account={a}"));
        }
        args.extend(self.options.sbatch_args.iter().cloned());
        args.push(script.display().to_string());
        let out = output("sbatch", &args).await.map_err(|e| e.to_string())?;
        // `--parsable` prints `id` or `id;cluster`.
        let id = out.trim().split(';').next().unwrap_or_default().to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return Err(format!("sbatch printed `{}`, not a job id", out.trim()));
        }
        let submitted = Submitted {
            job_id: id.clone(),
            attempt,
        };
        write_atomic(
            &dir.join("submitted.json"),
            &serde_json::to_vec(&submitted).expect("serialises"),
        )
        .map_err(|e| io("recording the job id", e))?;
        Ok(id)
    }

    /// Each of this user's queued or running jobs, by id, with its state, at most one poll old.
    async fn queued(&self) -> Result<HashMap<String, String>, String> {
        let mut cached = self.queue.lock().await;
        if let Some((at, states)) = cached.as_ref() {
            if at.elapsed() < self.options.poll {
                return Ok(states.clone());
            }
        }
        let args: Vec<String> = ["--me", "-h", "-o", "%i %T"].map(String::from).into();
        let out = output("squeue", &args).await.map_err(|e| e.to_string())?;
        let states: HashMap<String, String> = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(id, st)| (id.trim().to_string(), st.trim().to_string()))
            .collect();
        *cached = Some((Instant::now(), states.clone()));
        Ok(states)
    }

    /// Why a job that left no result ended, from `scontrol` (which keeps finished jobs a few
    /// minutes) or `sacct` (where accounting is on).
    async fn why_ended(&self, id: &str) -> (FailureKind, String, Resources) {
        let args = vec!["show".to_string(), "job".into(), "-o".into(), id.to_string()];
        let (state, reason, granted) = match output("scontrol", &args).await {
            Ok(text) => {
                let field = |name: &str| {
                    text.split_whitespace()
                        .find_map(|f| f.strip_prefix(&format!("{name}=")))
                        .map(str::to_string)
                };
                let granted = Resources {
                    memory_mb: field("TRES").and_then(|t| {
                        t.split(',')
                            .find_map(|kv| kv.strip_prefix("mem="))
                            .and_then(|m| m.parse::<crate::resources::Memory>().ok())
                            .map(|m| m.0)
                    }),
                    time_s: field("TimeLimit")
                        .and_then(|t| t.parse::<crate::resources::WallTime>().ok())
                        .map(|t| t.0),
                    ..Resources::default()
                };
                (field("JobState"), field("Reason"), granted)
            }
            Err(_) => {
                let args: Vec<String> = vec![
                    "-n".into(),
                    "-P".into(),
                    "-X".into(),
                    "-o".into(),
                    "State".into(),
                    "-j".into(),
                    id.into(),
                ];
                let state = output("sacct", &args).await.ok().and_then(|s| {
                    s.lines()
                        .next()
                        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                });
                (state, None, Resources::default())
            }
        };
        let state = state.unwrap_or_default();
        let kind = match state.as_str() {
            "OUT_OF_MEMORY" => FailureKind::OutOfMemory,
            "TIMEOUT" | "DEADLINE" => FailureKind::TimedOut,
            "PREEMPTED" => FailureKind::Preempted,
            "CANCELLED" => FailureKind::Cancelled,
            _ => FailureKind::Failed,
        };
        let what = match (state.as_str(), reason.as_deref()) {
            ("", _) => format!("Slurm job {id} ended without leaving a result, and Slurm no longer knows why"),
            ("COMPLETED", _) => format!("Slurm job {id} completed without leaving a result"),
            (s, Some(r)) if r != "None" => format!("Slurm job {id} ended {s} ({r})"),
            (s, _) => format!("Slurm job {id} ended {s}"),
        };
        (kind, what, granted)
    }

    async fn cancel(&self, id: &str) {
        let _ = output("scancel", &[id.to_string()]).await;
        // Wait until the job has left the queue, so that a cancelled run leaves none behind.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match self.fresh_queue().await {
                Ok(q) if q.contains_key(id) => tokio::time::sleep(self.options.poll).await,
                _ => return,
            }
        }
    }

    async fn fresh_queue(&self) -> Result<HashMap<String, String>, String> {
        *self.queue.lock().await = None;
        self.queued().await
    }

    async fn wait(
        &self,
        id: &str,
        dir: &Path,
        progress: &dyn ProgressSink,
        cancel: &AtomicBool,
    ) -> Result<Digest, Failure> {
        let result_path = dir.join(format!("{id}.result.json"));
        let log = || log_tail(&dir.join(format!("{id}.log")));
        let finished = |r: JobResult| match (r.output, r.error) {
            (Some(output), _) => Ok(output),
            (None, error) => Err(Failure {
                log: log(),
                ..Failure::new(
                    FailureKind::Failed,
                    format!(
                        "{} (Slurm job {id} on {})",
                        error.unwrap_or_else(|| "failed".into()),
                        r.host
                    ),
                )
            }),
        };
        let mut shown = String::new();
        loop {
            if cancel.load(Ordering::Relaxed) {
                self.cancel(id).await;
                return Err(Failure::new(FailureKind::Cancelled, "interrupted"));
            }
            if let Ok(r) = JobResult::read(&result_path) {
                return finished(r);
            }
            let queue = self.queued().await.map_err(|e| Failure::new(FailureKind::Failed, e))?;
            match queue.get(id) {
                Some(state) => {
                    if *state != shown {
                        progress.message(&format!("Slurm job {id} {}", state.to_lowercase()));
                        shown = state.clone();
                    }
                }
                None => {
                    // The shared listing may predate the job's submission: look again.
                    if self.fresh_queue().await.is_ok_and(|q| q.contains_key(id)) {
                        tokio::time::sleep(self.options.poll).await;
                        continue;
                    }
                    // It may have written its result and left between the two looks.
                    if let Ok(r) = JobResult::read(&result_path) {
                        return finished(r);
                    }
                    let (kind, what, granted) = self.why_ended(id).await;
                    return Err(Failure {
                        kind,
                        message: what,
                        log: log(),
                        granted,
                    });
                }
            }
            tokio::time::sleep(self.options.poll).await;
        }
    }

    /// A job an earlier executor submitted for this key that is still queued or running.
    async fn adoptable(&self, dir: &Path) -> Option<Submitted> {
        let bytes = std::fs::read(dir.join("submitted.json")).ok()?;
        let submitted: Submitted = serde_json::from_slice(&bytes).ok()?;
        let queue = self.queued().await.ok()?;
        queue.contains_key(&submitted.job_id).then_some(submitted)
    }
}

impl Runner for Slurm {
    fn is_local(&self) -> bool {
        false
    }

    fn run(
        &self,
        job: Job,
        _kind: Arc<dyn DynStage>,
        progress: Arc<dyn ProgressSink>,
        cancel: Arc<AtomicBool>,
    ) -> JobFuture<'_> {
        Box::pin(async move {
            let dir = self.dir(&job.key);
            std::fs::create_dir_all(&dir)
                .map_err(|e| Failure::new(FailureKind::Failed, format!("creating {}: {e}", dir.display())))?;
            let id = match self.adoptable(&dir).await {
                Some(s) => {
                    progress.notice(&format!(
                        "adopting Slurm job {} (attempt {}), submitted by an earlier run and still in the queue",
                        s.job_id, s.attempt
                    ));
                    s.job_id
                }
                None => {
                    let id = self
                        .submit(&job, &dir)
                        .await
                        .map_err(|e| Failure::new(FailureKind::Failed, format!("submitting to Slurm: {e}")))?;
                    progress.message(&format!("Slurm job {id} submitted"));
                    id
                }
            };
            self.wait(&id, &dir, progress.as_ref(), &cancel).await
        })
    }
}

/// The last 40 lines of a job's log, read from at most its last 64 KiB: a stage may log a lot.
fn log_tail(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024))).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(tail(&String::from_utf8_lossy(&bytes), 40))
}

/// A path as one word of a POSIX shell command.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
    }
}
