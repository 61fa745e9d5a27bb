//! What a running stage may touch: its inputs, its output folder, progress and cancellation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use secvec_cache::{Digest, Memo};
use serde::{Deserialize, Serialize};

use crate::ResultFields;

/// One artifact bound to an input slot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InputArtifact {
    /// A read-only directory (stage outputs) or file/directory on disk (`{path: ...}` inputs).
    pub path: PathBuf,
    pub digest: Digest,
    /// The matrix values of the upstream variant, e.g. `theta=0.5`.
    pub labels: BTreeMap<String, String>,
    /// The manifest stage it came from; only for kinds that declare
    /// [`crate::Stage::READS_UPSTREAM_NAMES`], and never for `{path: ...}` inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// Receives progress from a running stage.
pub trait ProgressSink: Send + Sync {
    fn progress(&self, done: u64, total: u64);
    /// A status line for the stage's progress display.
    fn message(&self, text: &str);
    /// Something the user should see whatever the display.
    fn notice(&self, text: &str);
}

/// Everything a stage may touch: its inputs (read-only), its output directory, progress and
/// cancellation. Stages do no other I/O, so the engine can cache, commit and trace them.
pub struct StageContext {
    inputs: BTreeMap<String, Vec<InputArtifact>>,
    out: PathBuf,
    scratch: PathBuf,
    memo: Memo,
    progress: Arc<dyn ProgressSink>,
    cancelled: Arc<AtomicBool>,
    result_fields: Option<ResultFields>,
}

#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

#[derive(Debug, thiserror::Error)]
#[error("input `{0}` is not bound: the kind reads a slot it does not declare required")]
pub struct UnboundInput(pub String);

impl StageContext {
    pub fn new(
        inputs: BTreeMap<String, Vec<InputArtifact>>,
        out: PathBuf,
        scratch: PathBuf,
        memo: Memo,
        progress: Arc<dyn ProgressSink>,
        cancelled: Arc<AtomicBool>,
    ) -> Self {
        StageContext {
            inputs,
            out,
            scratch,
            memo,
            progress,
            cancelled,
            result_fields: None,
        }
    }

    /// The context of a kind that declares the fields of its results rows
    /// ([`crate::Stage::result_fields`]): rows with other fields are refused when written.
    pub fn declaring(self, result_fields: Option<ResultFields>) -> Self {
        StageContext { result_fields, ..self }
    }

    /// What the kind declared its results rows hold.
    pub fn result_fields(&self) -> Option<&ResultFields> {
        self.result_fields.as_ref()
    }

    /// The single artifact of a slot, if bound.
    pub fn input(&self, slot: &str) -> Option<&InputArtifact> {
        self.inputs.get(slot).and_then(|v| v.first())
    }

    /// The artifact of a required slot. The plan binds every required slot, so an unbound one
    /// is a bug in the kind (a slot it reads but declares optional, or not at all).
    pub fn required(&self, slot: &str) -> Result<&InputArtifact, UnboundInput> {
        self.input(slot).ok_or_else(|| UnboundInput(slot.to_string()))
    }

    /// Every bound artifact, by slot.
    pub fn all_inputs(&self) -> &BTreeMap<String, Vec<InputArtifact>> {
        &self.inputs
    }

    /// All artifacts of a slot, in manifest order.
    pub fn inputs(&self, slot: &str) -> &[InputArtifact] {
        self.inputs.get(slot).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The directory this stage writes its outputs into.
    pub fn out_dir(&self) -> &Path {
        &self.out
    }

    /// A folder (the stage creates it when it needs it) that outlives a failed or killed attempt
    /// at this stage (same key) and is removed once its outputs are committed: where long stages
    /// keep checkpoints to resume from.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch
    }

    /// Responses of expensive calls by request, shared by every stage and kept across failed
    /// and killed attempts (an LLM's answers): see [`Memo`].
    pub fn memo(&self) -> &Memo {
        &self.memo
    }

    /// Writes one output file, creating parent directories.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        let path = self.out.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)
    }

    pub fn progress(&self, done: u64, total: u64) {
        self.progress.progress(done, total);
    }

    pub fn message(&self, text: &str) {
        self.progress.message(text);
    }

    pub fn notice(&self, text: &str) {
        self.progress.notice(text);
    }

    /// Long loops call this so an interrupted run stops promptly.
    pub fn check_cancelled(&self) -> Result<(), Cancelled> {
        if self.cancelled.load(Ordering::Relaxed) {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
}
