//! Runs jobs on this machine, on a blocking thread each: in this process, or in
//! `secvec-worker` for the kinds that need libtorch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use secvec_cache::Cache;
use secvec_stage::{DynStage, ProgressSink};

use super::{worker, Failure, FailureKind, JobFuture, Runner};
use crate::job::Job;

pub struct Local {
    cache: Arc<Cache>,
}

impl Local {
    pub fn new(cache: Arc<Cache>) -> Local {
        Local { cache }
    }
}

impl Runner for Local {
    fn is_local(&self) -> bool {
        true
    }

    fn run(
        &self,
        job: Job,
        kind: Arc<dyn DynStage>,
        progress: Arc<dyn ProgressSink>,
        cancel: Arc<AtomicBool>,
    ) -> JobFuture<'_> {
        let cache = self.cache.clone();
        Box::pin(async move {
            let flag = cancel.clone();
            let done = tokio::task::spawn_blocking(move || match kind.libtorch() {
                true => worker::run(&job, progress, &flag),
                false => job
                    .run(kind.as_ref(), &cache, progress, flag)
                    .map_err(|e| Failure::new(FailureKind::Failed, e.to_string())),
            })
            .await;
            match done {
                Ok(Ok(output)) => Ok(output),
                // A stage stopped by the interrupt reports an error of its own; what happened
                // is the interrupt.
                Ok(Err(_)) if cancel.load(Ordering::Relaxed) => {
                    Err(Failure::new(FailureKind::Cancelled, "interrupted"))
                }
                Ok(Err(failure)) => Err(failure),
                Err(join) => Err(Failure::new(FailureKind::Failed, format!("stage task aborted: {join}"))),
            }
        })
    }
}
