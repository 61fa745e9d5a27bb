//! `diagnostics`: how alike two task vectors are (`diagnostics.json`), as SecVecCoder's Table I
//! measures them, over all modules, per module type and per layer.

use std::collections::BTreeMap;
use std::path::Path;

use secvec_stage::StageContext;
use serde::{Deserialize, Serialize};

use crate::{json, ArtifactError};

pub const TAG: &str = "diagnostics";
pub const FILE: &str = "diagnostics.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    pub all: Similarity,
    /// By module type (`q_proj`, `down_proj`, ...).
    pub by_module: BTreeMap<String, Similarity>,
    /// By decoder layer.
    pub by_layer: BTreeMap<usize, Similarity>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Similarity {
    /// Cosine similarity of the two vectors.
    pub cosine: f64,
    /// Of the entries nonzero in both vectors, the percentage whose signs match.
    pub sign_agreement: f64,
    /// How many entries are nonzero in both (the sign agreement's weight).
    pub entries: u64,
}

impl Diagnostics {
    pub fn read(dir: &Path) -> Result<Diagnostics, ArtifactError> {
        json::read(dir, FILE, "task-vector diagnostics")
    }

    pub fn write(&self, ctx: &StageContext) -> Result<(), ArtifactError> {
        json::write(ctx, FILE, self)
    }
}
