//! `secvec cache`: checking the cache, and removing what no manifest uses.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use secvec_cache::{Cache, Digest};
use secvec_engine::explain::{explain, Action};

use super::load_plan;
use super::{open_if_present, Globals};
use crate::exit::Exit;
use crate::runs;

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Re-hash every artifact and check every entry.
    Verify {
        /// Remove broken entries and artifacts so the next run recomputes them.
        #[arg(long)]
        fix: bool,
    },
    /// Remove what none of the given manifests references.
    Gc {
        /// The manifests whose cached results to keep (as they plan now).
        manifests: Vec<PathBuf>,
        /// Overlays applied to every manifest named (repeatable).
        #[arg(short = 'o', long = "overlay")]
        overlays: Vec<PathBuf>,
        /// Overrides applied to every manifest named (repeatable).
        #[arg(long = "set")]
        sets: Vec<String>,
        /// List what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also forget every run record (`secvec runs`); kept otherwise.
        #[arg(long)]
        runs: bool,
    },
}

pub fn run(command: CacheCommand, globals: &Globals) -> Result<Exit> {
    match command {
        CacheCommand::Verify { fix } => verify(fix, globals),
        CacheCommand::Gc {
            manifests,
            overlays,
            sets,
            dry_run,
            runs: forget_runs,
        } => gc(globals, &manifests, &overlays, &sets, dry_run, forget_runs),
    }
}

fn verify(fix: bool, globals: &Globals) -> Result<Exit> {
    let cache = open_if_present(&globals.cache)?.with_context(|| format!("no cache at {}", globals.cache.display()))?;
    let report = cache.verify(fix)?;
    for p in &report.problems {
        out!("corrupt: {}: {}", p.path.display(), p.what);
    }
    out!(
        "checked {} artifacts and {} entries: {} problem(s){}",
        report.artifacts_checked,
        report.entries_checked,
        report.problems.len(),
        if fix {
            format!(", {} removed", report.removed)
        } else {
            String::new()
        }
    );
    Ok(Exit::checked(report.problems.is_empty() || fix))
}

fn gc(
    globals: &Globals,
    manifests: &[PathBuf],
    overlays: &[PathBuf],
    sets: &[String],
    dry_run: bool,
    forget_runs: bool,
) -> Result<Exit> {
    if manifests.is_empty() {
        bail!("name the manifests whose results to keep: secvec cache gc MANIFEST...");
    }
    let plans = manifests
        .iter()
        .map(|m| load_plan(&globals.registry, &globals.cache, m, overlays, sets))
        .collect::<Result<Vec<_>>>()?;
    let cache = Cache::open_exclusive(&globals.cache)?;
    let mut keep = std::collections::HashSet::new();
    for plan in &plans {
        for row in explain(plan, Some(&cache), &[], &[])? {
            if let (Action::Cached, Some(k)) = (row.action, row.key) {
                keep.insert(k.parse::<Digest>()?);
            }
        }
    }
    let r = cache.gc(&keep, dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut by_manifest: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (m, stage) in &r.stages_removed {
        by_manifest.entry(m).or_default().push(stage);
    }
    for (m, stages) in &mut by_manifest {
        stages.sort_unstable();
        out!(
            "{verb} the results of {} stage(s) of {m}: {}",
            stages.len(),
            stages.join(", ")
        );
    }
    for link in dangling_links(&globals.out, &r.artifacts, dry_run)? {
        out!("{verb} the dangling link {}", link.display());
    }
    out!(
        "{verb} {} entries and {} artifacts ({:.1} MB); kept {} entries",
        r.entries_removed,
        r.artifacts_removed,
        r.bytes_freed as f64 / 1e6,
        r.entries_kept
    );
    if forget_runs && !dry_run {
        out!("forgot {} run records", runs::forget_all(&globals.cache)?);
    }
    Ok(Exit::Success)
}

/// Links under `out/<manifest>/` whose outputs are gone or among `removed`, with their
/// provenance records; removed unless `dry_run`.
fn dangling_links(out: &Path, removed: &[PathBuf], dry_run: bool) -> Result<Vec<PathBuf>> {
    let removed: std::collections::HashSet<PathBuf> = removed.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let mut found = Vec::new();
    for manifest in std::fs::read_dir(out).into_iter().flatten().flatten() {
        for entry in std::fs::read_dir(manifest.path()).into_iter().flatten().flatten() {
            let link = entry.path();
            let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            let gone = !link.exists() || link.canonicalize().is_ok_and(|t| removed.contains(&t));
            if is_link && gone {
                if !dry_run {
                    std::fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
                    let record =
                        link.with_file_name(format!("{}.provenance.json", entry.file_name().to_string_lossy()));
                    let _ = std::fs::remove_file(record);
                }
                found.push(link);
            }
        }
    }
    found.sort();
    Ok(found)
}
