//! `secvec show`: what a stage's last run published under `out/`, found by its name, by the
//! base name of a matrix stage (every variant), or by `stage@key=value` (the variants with
//! those values).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use secvec_engine::error::did_you_mean;
use secvec_engine::progress::Status;
use secvec_engine::provenance::{InputOrigin, Published};
use secvec_engine::stage_ref::StageRef;
use serde_json::Value;

use crate::runs::{self, RunRecord};

/// One published output: `out/<manifest>/<stage>` and its record.
pub struct Found {
    pub manifest: String,
    pub stage: String,
    pub link: PathBuf,
    pub record: Published,
}

/// The stage a concrete stage's name (`steered@operator=negation,theta=0.5`) is a variant of.
fn base(name: &str) -> &str {
    name.split_once('@').map_or(name, |(base, _)| base)
}

/// Whether the concrete stage `name` is what `query` asks for: that stage, or those of its
/// variants with the `key=value`s the query picks.
fn matches(query: &str, name: &str) -> bool {
    if name == query {
        return true;
    }
    let (Ok(q), Ok(n)) = (query.parse::<StageRef>(), name.parse::<StageRef>()) else {
        return false;
    };
    q.stage == n.stage && !q.gather && q.select.iter().all(|kv| n.select.contains(kv))
}

/// The published stages of `out/` that `query` names, in `manifest` when given.
pub fn find(out: &Path, cache: &Path, query: &str, manifest: Option<&str>) -> Result<Vec<Found>> {
    let manifests: Vec<String> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let records = runs::list(cache)?;
    if let Some(m) = manifest {
        if !manifests.iter().any(|x| x == m) {
            let ran = records.iter().any(|r| r.name == m);
            let mut known = manifests.clone();
            known.sort();
            bail!(
                "{} (outputs under {}: {}); --manifest takes the manifest's `name:`, not its file",
                if ran {
                    format!("manifest `{m}` has run but published no outputs")
                } else {
                    format!(
                        "no manifest named `{m}` has run here{}",
                        did_you_mean(m, known.iter().map(String::as_str))
                    )
                },
                out.display(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            );
        }
    }
    let mut found = Vec::new();
    for m in manifests.iter().filter(|m| manifest.is_none_or(|want| want == *m)) {
        let dir = out.join(m);
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(stage) = file.strip_suffix(".provenance.json") else {
                continue;
            };
            if !matches(query, stage) {
                continue;
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let record: Published = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a provenance record; rerun the stage to rewrite it",
                    path.display()
                )
            })?;
            found.push(Found {
                manifest: m.clone(),
                stage: stage.to_string(),
                link: dir.join(stage),
                record,
            });
        }
    }
    // A full name picks that stage alone, though it is also a prefix of its variants' names.
    if found.iter().any(|f| f.stage == query) {
        found.retain(|f| f.stage == query);
    }
    found.sort_by(|a, b| (&a.manifest, &a.stage).cmp(&(&b.manifest, &b.stage)));
    if found.is_empty() {
        bail!("{}", not_found(query, manifest, &records, &manifests, out));
    }
    Ok(found)
}

/// Why nothing is published for `query`: a stage the runs know that has not produced outputs,
/// or a name no run has (with the closest one).
fn not_found(query: &str, manifest: Option<&str>, records: &[RunRecord], manifests: &[String], out: &Path) -> String {
    let mine = |r: &&RunRecord| manifest.is_none_or(|m| r.name == m);
    let last = records.iter().filter(mine).rev().find_map(|r| {
        r.stages
            .iter()
            .find(|(name, _)| matches(query, name))
            .map(|(name, s)| (r, name, s))
    });
    if let Some((run, name, stage)) = last {
        return format!(
            "stage `{name}` of manifest `{}` has no outputs yet: in its last run ({}) it {}. `secvec run {}` runs it",
            run.name,
            run.id,
            match (&stage.status, &stage.error) {
                (Status::Skipped, Some(why)) => format!("was skipped: {why}"),
                (Status::Skipped, None) => "was skipped".into(),
                (Status::Failed, Some(why)) => format!("failed: {why}"),
                (Status::Failed, None) => "failed".into(),
                (Status::Interrupted, _) => "was interrupted".into(),
                (Status::Ran | Status::Cached, _) => "finished, but its out/ link has since been removed".into(),
            },
            run.manifest.display()
        );
    }
    let mut known: Vec<String> = records
        .iter()
        .filter(mine)
        .flat_map(|r| r.stages.keys().map(|s| base(s).to_string()))
        .collect();
    known.sort();
    known.dedup();
    let scope = manifest.map_or(String::new(), |m| format!(" of manifest `{m}`"));
    if known.is_empty() && manifests.is_empty() {
        return format!(
            "no stage has run with outputs under {}; run a manifest first",
            out.display()
        );
    }
    format!(
        "no stage `{query}`{scope} has run here{}; stages that have run: {}",
        did_you_mean(base(query), known.iter().map(String::as_str)),
        if known.is_empty() {
            "none recorded".into()
        } else {
            known.join(", ")
        }
    )
}

/// `1.2 kB`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1_000 => format!("{b} B"),
        b if b < 1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        b if b < 1_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.1} GB", b as f64 / 1e9),
    }
}

/// A value on one line: text as written unless it spans lines (then quoted, with `\n`).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) if !s.contains('\n') => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.fract() != 0.0 => format!("{x:.4}"),
            Some(x) if x.abs() < 1e15 => format!("{}", x as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// `tools` lines: each tool's path and version; a package list as its length.
fn tools(environment: &Value) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    if environment.is_null() {
        return lines;
    }
    for (path, v) in runs::flatten(environment) {
        match path.split_once(".packages.") {
            Some((tool, _)) => {
                let head = format!("{tool}.packages = ");
                match lines.last_mut() {
                    Some(last) if last.starts_with(&head) => {
                        let n: usize = last[head.len()..]
                            .split(' ')
                            .next()
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        *last = format!("{head}{} (--json lists them)", n + 1);
                    }
                    _ => lines.push(format!("{head}1 (--json lists them)")),
                }
            }
            None => lines.push(format!("{path} = {}", text(&v))),
        }
    }
    lines
}

/// What a researcher wants of one output, one field a line.
pub fn summary(f: &Found) -> String {
    let p = &f.record.provenance;
    let mut lines = vec![
        format!(
            "stage     {} of manifest {} (kind {} v{})",
            f.stage, f.manifest, p.kind, p.stage_version
        ),
        format!("outputs   {} -> {}", f.link.display(), f.record.path.display()),
    ];
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&f.record.path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let dir = e.path().is_dir();
            (
                if dir { format!("{name}/") } else { name },
                e.metadata().map_or(0, |m| m.len()),
            )
        })
        .collect();
    files.sort();
    let listed: Vec<String> = files
        .iter()
        .map(|(n, b)| {
            if n.ends_with('/') {
                n.clone()
            } else {
                format!("{n} ({})", size(*b))
            }
        })
        .collect();
    lines.push(format!(
        "          {}",
        if listed.is_empty() {
            "(the output is gone from the cache; rerun the stage)".into()
        } else {
            listed.join(", ")
        }
    ));
    lines.push(format!("key       {}", f.record.key.hex()));
    let started = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(p.started_at_unix.max(0.0));
    lines.push(format!(
        "ran       {} for {:.2}s on {} ({} {}, {} cpus), secvec {}",
        humantime::format_rfc3339_seconds(started),
        p.seconds,
        p.host.hostname,
        p.host.os,
        p.host.arch,
        p.host.cpus,
        p.secvec_version
    ));
    if !p.labels.is_empty() {
        let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        lines.push(format!("labels    {}", labels.join(", ")));
    }
    for (i, input) in p.inputs.iter().enumerate() {
        let from = match &input.from {
            InputOrigin::Stage { stage } => format!("stage {stage}"),
            InputOrigin::Path { path } => format!("{}", path.display()),
        };
        let head = if i == 0 { "inputs" } else { "" };
        lines.push(format!("{head:<9} {} <- {from} ({})", input.slot, input.digest.short()));
    }
    for (i, (path, v)) in runs::flatten(&p.params).into_iter().enumerate() {
        let head = if i == 0 { "params" } else { "" };
        lines.push(format!("{head:<9} {path} = {}", text(&v)));
    }
    for (i, line) in tools(&p.environment).into_iter().enumerate() {
        let head = if i == 0 { "tools" } else { "" };
        lines.push(format!("{head:<9} {line}"));
    }
    for (i, (name, v)) in runs::metrics_of(&f.record.path).into_iter().enumerate() {
        let head = if i == 0 { "results" } else { "" };
        lines.push(format!("{head:<9} {name} = {}", text(&Value::from(v))));
    }
    lines.join("\n")
}

/// One line per output, when a query names several.
pub fn table(found: &[Found]) -> String {
    let width = found.iter().map(|f| f.stage.len()).max().unwrap_or(0);
    let mut lines: Vec<String> = found
        .iter()
        .map(|f| {
            format!(
                "{:<width$}  {:<14}  {}  {:>8.2}s  {}",
                f.stage,
                f.manifest,
                f.record.key.short(),
                f.record.provenance.seconds,
                f.link.display()
            )
        })
        .collect();
    lines.push(format!(
        "{} outputs; name one for its details, e.g. `secvec show '{}'`",
        found.len(),
        found[0].stage
    ));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn a_query_names_a_stage_all_its_variants_or_those_with_given_values() {
        let v = "steered@operator=negation,theta=0.5";
        assert!(matches("steered", v));
        assert!(matches("steered@theta=0.5", v));
        assert!(matches("steered@theta=0.5,operator=negation", v));
        assert!(matches(v, v));
        assert!(!matches("steered@theta=1.5", v));
        assert!(!matches("steer", v));
        assert!(!matches("steered-samples", v));
    }
}
