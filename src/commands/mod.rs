//! One module per command, which `main` dispatches to, and what several of them share.

pub mod cache;
pub mod compare;
pub mod completions;
pub mod config;
pub mod dag;
pub mod diff;
pub mod digest;
pub mod doctor;
pub mod kinds;
pub mod plan;
pub mod run;
pub mod run_stage;
pub mod runs;
pub mod schema;
pub mod serve;
pub mod show;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use secvec_cache::{Cache, StatCache};
use secvec_engine::manifest;
use secvec_engine::plan::Plan;
use secvec_stage::Registry;

/// What every command may use: the stage kinds of this build and the folders the global
/// options name.
pub struct Globals {
    pub registry: Registry,
    /// `--cache`.
    pub cache: PathBuf,
    /// `--out`.
    pub out: PathBuf,
}

pub fn open_if_present(root: &Path) -> Result<Option<Cache>> {
    if !root.join("LOCK").exists() {
        return Ok(None);
    }
    Ok(Some(
        Cache::open(root).with_context(|| format!("opening cache {}", root.display()))?,
    ))
}

/// Resolves on Ctrl-C or SIGTERM (what a scheduler sends before it kills a job).
pub async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A manifest as composed from its file, overlays and overrides.
#[derive(Args)]
pub struct Composed {
    /// The manifest (YAML).
    pub manifest: PathBuf,
    /// Overlay deep-merged onto the manifest (repeatable, applied in order; `null` deletes a key).
    #[arg(short = 'o', long = "overlay")]
    pub overlays: Vec<PathBuf>,
    /// Override one value, e.g. `--set stages.train.params.lr=0.0002`.
    #[arg(long = "set")]
    pub sets: Vec<String>,
}

impl Composed {
    pub fn plan(&self, registry: &Registry, cache: &Path) -> Result<Plan> {
        load_plan(registry, cache, &self.manifest, &self.overlays, &self.sets)
    }
}

#[derive(Args)]
pub struct Target {
    #[command(flatten)]
    pub composed: Composed,
    /// Only these stages and what they depend on.
    #[arg(long)]
    pub only: Vec<String>,
    /// Rerun these stages even when cached.
    #[arg(long)]
    pub force: Vec<String>,
}

/// Loads and plans a manifest, hashing `{path:}` inputs through the stat cache kept in `cache`
/// (saved there when the cache exists).
pub fn load_plan(
    registry: &Registry,
    cache: &Path,
    manifest: &Path,
    overlays: &[PathBuf],
    sets: &[String],
) -> Result<Plan> {
    let loaded = manifest::load(manifest, overlays, sets)?;
    let mut stat = StatCache::load(&cache.join("stat.json"));
    let plan = secvec_engine::plan::build(&loaded, registry, &mut stat)?;
    if cache.is_dir() {
        stat.save();
    }
    Ok(plan)
}
