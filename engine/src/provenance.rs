//! How an output came to be: recorded in the cache with the output and published beside its
//! `out/<manifest>/<stage>` link, where `secvec show` reads it.

use std::path::PathBuf;

use indexmap::IndexMap;
use secvec_cache::Digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provenance {
    pub stage: String,
    pub manifest: String,
    pub kind: String,
    pub stage_version: u32,
    pub secvec_version: String,
    pub params: Value,
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// The tools and environment the stage depends on (`null`: none).
    #[serde(default)]
    pub environment: Value,
    pub inputs: Vec<ProvenanceInput>,
    pub host: Host,
    pub started_at_unix: f64,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProvenanceInput {
    pub slot: String,
    pub from: InputOrigin,
    pub digest: Digest,
}

/// Where an input came from: a stage of the run or a file on disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputOrigin {
    Stage { stage: String },
    Path { path: PathBuf },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Host {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub cpus: usize,
}

impl Host {
    pub fn this() -> Self {
        Host {
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }
}

/// `out/<manifest>/<stage>.provenance.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Published {
    pub key: Digest,
    pub output: Digest,
    /// The output tree in the cache.
    pub path: PathBuf,
    pub preimage: Value,
    pub provenance: Provenance,
}

impl Published {
    pub fn file_name(stage: &str) -> String {
        format!("{stage}.provenance.json")
    }
}
