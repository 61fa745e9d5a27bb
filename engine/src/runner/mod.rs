//! Runners execute one job each: [`Local`] in this process, within this machine's core and GPU
//! slots, and [`Slurm`] as a batch job on a cluster sharing the cache. The executor decides what
//! may run and when; a runner only runs it and says how it ended.

mod local;
mod slurm;
mod worker;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use secvec_cache::Digest;
use serde::{Deserialize, Serialize};

pub use local::Local;
pub use slurm::{Slurm, SlurmOptions};

use secvec_stage::{DynStage, ProgressSink, Resources};

use crate::job::Job;

/// Why an attempt at a stage did not produce its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The stage returned an error, panicked, or its process died.
    Failed,
    /// Stopped on purpose: Ctrl-C, or the job was cancelled on the cluster.
    Cancelled,
    OutOfMemory,
    /// The scheduler took the node back for other work.
    Preempted,
    /// Ran past its wall-time limit.
    TimedOut,
}

impl FailureKind {
    pub fn describe(self) -> &'static str {
        match self {
            FailureKind::Failed => "failed",
            FailureKind::Cancelled => "cancelled",
            FailureKind::OutOfMemory => "ran out of memory",
            FailureKind::Preempted => "was preempted",
            FailureKind::TimedOut => "ran out of time",
        }
    }

    /// What the next attempt asks for after one that failed this way: twice the memory after
    /// running out of it, twice the time after running out of that (Nextflow's and Snakemake's
    /// `attempt`-scaled resources, applied where the failure says they were short). `granted` is
    /// what the scheduler really reserved, for a stage that left it to the default.
    pub fn retried(self, asked: &Resources, granted: &Resources) -> Resources {
        let mut next = asked.clone();
        match self {
            FailureKind::OutOfMemory => {
                next.memory_mb = asked.memory_mb.or(granted.memory_mb).map(|m| m.saturating_mul(2));
            }
            FailureKind::TimedOut => {
                next.time_s = asked.time_s.or(granted.time_s).map(|t| t.saturating_mul(2));
            }
            _ => {}
        }
        next
    }
}

/// A failed attempt: what happened, in words, and the end of the stage's log where there is one.
#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    pub log: Option<String>,
    /// What the scheduler really reserved, for a retry to scale from.
    pub granted: Resources,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            log: None,
            granted: Resources::default(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(log) = self.log.as_deref().filter(|l| !l.trim().is_empty()) {
            write!(f, "\n--- end of the stage's log ---\n{}", log.trim_end())?;
        }
        Ok(())
    }
}

pub type JobFuture<'a> = Pin<Box<dyn Future<Output = Result<Digest, Failure>> + Send + 'a>>;

/// Runs one job to completion: its output is committed to the cache (with its entry) when it
/// returns `Ok`.
pub trait Runner: Send + Sync {
    /// Whether jobs run in this process, so the executor must keep them within this machine's
    /// core and GPU slots (a cluster's scheduler does that for its own).
    fn is_local(&self) -> bool;
    fn run(
        &self,
        job: Job,
        kind: Arc<dyn DynStage>,
        progress: Arc<dyn ProgressSink>,
        cancel: Arc<AtomicBool>,
    ) -> JobFuture<'_>;
}

/// The last `n` lines of a log.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_doubles_only_what_ran_out() {
        let declared = Resources {
            memory_mb: Some(1000),
            time_s: None,
            ..Resources::ONE_CPU
        };
        let granted = Resources {
            memory_mb: Some(1000),
            time_s: Some(600),
            ..Resources::ONE_CPU
        };
        let oom = FailureKind::OutOfMemory.retried(&declared, &granted);
        assert_eq!((oom.memory_mb, oom.time_s), (Some(2000), None));
        let slow = FailureKind::TimedOut.retried(&declared, &granted);
        assert_eq!((slow.memory_mb, slow.time_s), (Some(1000), Some(1200)));
        assert_eq!(FailureKind::Failed.retried(&declared, &granted), declared);
    }
}
