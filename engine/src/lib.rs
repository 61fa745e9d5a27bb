//! The secvec engine: manifests and overlays, the stage DAG, planning with content-addressed
//! keys, and the executor that runs stale stages and commits their outputs to the cache.

pub mod error;
pub mod exec;
pub mod explain;
pub mod job;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod provenance;
pub mod resources;
pub mod runner;
pub mod schema;
pub mod source;
pub mod stage_ref;

pub use error::{Location, ManifestError};
