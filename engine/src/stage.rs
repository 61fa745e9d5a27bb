//! The stage API: what a stage kind declares, and the artifact context it runs in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use secvec_cache::{Digest, Memo};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::resources::Resources;

/// The tag every `{path: ...}` input carries.
pub const FILES: &str = "files";

/// One named input of a stage kind.
#[derive(Clone, Debug)]
pub struct InputSlot {
    pub name: &'static str,
    /// Output tags an upstream may carry, one of which must match (`FILES` admits paths on disk).
    pub accepts: &'static [&'static str],
    /// Whether the slot takes a list of artifacts.
    pub many: bool,
    pub optional: bool,
    pub doc: &'static str,
}

impl InputSlot {
    pub fn accepts_files(&self) -> bool {
        self.accepts.contains(&FILES)
    }

    /// What the slot takes, in words: "`model` or a `{path: ...}`".
    pub fn describe(&self) -> String {
        let words: Vec<String> = self
            .accepts
            .iter()
            .map(|t| {
                if *t == FILES {
                    "a `{path: ...}`".to_string()
                } else {
                    format!("the output of a stage producing `{t}`")
                }
            })
            .collect();
        words.join(" or ")
    }
}

/// A stage kind: a pure function from its input artifacts and typed params to one output tree.
pub trait Stage: Send + Sync + 'static {
    type Params: DeserializeOwned + Serialize + JsonSchema;
    const KIND: &'static str;
    /// Bump when the same inputs and params would give different output, to invalidate caches.
    const VERSION: u32;
    const DESCRIPTION: &'static str;
    /// Params that change only how fast the stage runs, not what it writes: left out of its
    /// cache key, so that changing them reruns nothing.
    const SPEED_PARAMS: &'static [&'static str] = &[];
    /// Whether the stage reads the names of the stages its inputs come from
    /// ([`InputArtifact::stage`]); they then join its cache key.
    const READS_UPSTREAM_NAMES: bool = false;
    fn inputs() -> Vec<InputSlot>;
    /// Tags describing what the output tree holds, matched against downstream slots.
    fn output_tags() -> Vec<&'static str>;
    fn resources(_params: &Self::Params) -> Resources {
        Resources::ONE_CPU
    }
    /// What this machine decides about the stage, settled at plan time: `auto` params are
    /// resolved in place, and the returned identity of the tools and environment the stage
    /// depends on (interpreters, packages, tool versions, device model) joins its cache key and
    /// provenance. `Null` when nothing outside the stage's inputs matters.
    fn environment(_params: &mut Self::Params) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
    fn run(&self, params: &Self::Params, ctx: &StageContext) -> anyhow::Result<()>;
}

/// Object-safe face of [`Stage`], which the engine works with.
pub trait DynStage: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    fn description(&self) -> &'static str;
    fn speed_params(&self) -> &'static [&'static str];
    fn reads_upstream_names(&self) -> bool;
    fn inputs(&self) -> Vec<InputSlot>;
    fn output_tags(&self) -> Vec<&'static str>;
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Schema;
    fn param_names(&self) -> Vec<String>;
    /// Checks params and returns them with defaults filled in.
    fn check_params(
        &self,
        params: serde_yaml::Value,
    ) -> Result<serde_json::Value, serde_path_to_error::Error<serde_yaml::Error>>;
    /// Settles checked params on this machine (see [`Stage::environment`]).
    fn settle(&self, params: &serde_json::Value) -> anyhow::Result<Settled>;
    fn run(&self, params: &serde_json::Value, ctx: &StageContext) -> anyhow::Result<()>;
}

impl<S: Stage> DynStage for S {
    fn kind(&self) -> &'static str {
        S::KIND
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn description(&self) -> &'static str {
        S::DESCRIPTION
    }
    fn speed_params(&self) -> &'static [&'static str] {
        S::SPEED_PARAMS
    }
    fn reads_upstream_names(&self) -> bool {
        S::READS_UPSTREAM_NAMES
    }
    fn inputs(&self) -> Vec<InputSlot> {
        S::inputs()
    }
    fn output_tags(&self) -> Vec<&'static str> {
        S::output_tags()
    }
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<S::Params>()
    }
    fn param_names(&self) -> Vec<String> {
        param_names::<S::Params>()
    }
    fn check_params(
        &self,
        params: serde_yaml::Value,
    ) -> Result<serde_json::Value, serde_path_to_error::Error<serde_yaml::Error>> {
        let params = if params.is_null() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            params
        };
        let typed: S::Params = serde_path_to_error::deserialize(params)?;
        Ok(serde_json::to_value(&typed).expect("params serialise to JSON"))
    }
    fn settle(&self, params: &serde_json::Value) -> anyhow::Result<Settled> {
        let mut typed: S::Params = serde_json::from_value(params.clone())?;
        let environment = S::environment(&mut typed)?;
        Ok(Settled {
            resources: S::resources(&typed),
            params: serde_json::to_value(&typed).expect("params serialise to JSON"),
            environment,
        })
    }
    fn run(&self, params: &serde_json::Value, ctx: &StageContext) -> anyhow::Result<()> {
        let typed: S::Params = serde_json::from_value(params.clone())
            .map_err(|e| anyhow::anyhow!("resolved params of {} no longer parse: {e}", S::KIND))?;
        Stage::run(self, &typed, ctx)
    }
}

/// A stage's params as this machine runs them.
#[derive(Clone, Debug)]
pub struct Settled {
    /// With `auto` values resolved.
    pub params: serde_json::Value,
    pub resources: Resources,
    /// The identity of the tools and environment the stage depends on (`Null`: none).
    pub environment: serde_json::Value,
}

/// The stage kinds a binary knows.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: Vec<Arc<dyn DynStage>>,
}

impl Registry {
    pub fn with<S: Stage>(mut self, stage: S) -> Self {
        self.kinds.push(Arc::new(stage));
        self
    }
    pub fn get(&self, kind: &str) -> Option<Arc<dyn DynStage>> {
        self.kinds.iter().find(|k| k.kind() == kind).cloned()
    }
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn DynStage>> {
        self.kinds.iter()
    }
}

/// One artifact bound to an input slot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InputArtifact {
    /// A read-only directory (stage outputs) or file/directory on disk (`{path: ...}` inputs).
    pub path: PathBuf,
    pub digest: Digest,
    /// The matrix values of the upstream variant, e.g. `theta=0.5`.
    pub labels: BTreeMap<String, String>,
    /// The manifest stage it came from; only for kinds that declare
    /// [`Stage::READS_UPSTREAM_NAMES`], and never for `{path: ...}` inputs.
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
}

#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

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
        }
    }

    /// The single artifact of a slot, if bound.
    pub fn input(&self, slot: &str) -> Option<&InputArtifact> {
        self.inputs.get(slot).and_then(|v| v.first())
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

/// Top-level field names of a params type, used to apply manifest defaults.
pub(crate) fn param_names<P: JsonSchema>() -> Vec<String> {
    let schema = schemars::schema_for!(P);
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}
