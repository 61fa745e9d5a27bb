//! One module per command; `main` dispatches to them.

pub mod cache;
pub mod compare;
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
use secvec_cache::Cache;
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
