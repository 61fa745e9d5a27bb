//! `secvec plan`: what a run would do, predicted without running anything, and why each stage
//! that is not cached would run.

use std::collections::HashSet;
use std::fmt;

use secvec_cache::{key_of, Cache, Digest, Found};
use serde_json::Value;

use crate::error::ManifestError;
use crate::exec::selection;
use crate::plan::{Plan, Source};
use crate::source::join;

/// What a run would do with a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Cached,
    Run,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Action::Cached => "cached",
            Action::Run => "run",
        })
    }
}

/// Why a stage would run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A stage upstream runs first, so this stage's key is not known yet.
    Upstream(String),
    /// `--force` names it.
    Forced,
    /// Its cached output failed its check, for this cause.
    Damaged(String),
    /// Not cached, and no earlier run of it to compare with.
    Missing,
    /// What differs from its last run (or, for a renamed run, from the base run's).
    Changed { base: Option<Base>, changes: Vec<Change> },
}

/// The run a renamed run's stage is compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    pub manifest: String,
    pub stage: String,
}

/// One value that differs from the last run, before and after (digests cut short).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub what: Changed,
    pub old: String,
    pub new: String,
}

/// Which part of a stage's key a [`Change`] is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    Kind,
    /// The kind's version: its code changed what it writes.
    Version,
    /// A param, by its path (`lora.r`).
    Param(String),
    /// An input slot, and what its changed artifact comes from (a stage's output, a path).
    Input {
        slot: String,
        from: String,
    },
    /// The tools and environment the kind depends on, by path (empty: all of it).
    Environment(String),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (old, new) = (&self.old, &self.new);
        match &self.what {
            Changed::Kind => write!(f, "kind: {old} → {new}"),
            Changed::Version => write!(f, "version: {old} → {new}"),
            Changed::Param(path) if path.is_empty() => write!(f, "params: {old} → {new}"),
            Changed::Param(path) => write!(f, "params.{path}: {old} → {new}"),
            Changed::Input { slot, from } => write!(f, "input `{slot}` changed ({from}: {old} → {new})"),
            Changed::Environment(path) if path.is_empty() => write!(f, "environment changed: {old} → {new}"),
            Changed::Environment(path) => write!(f, "environment changed: {path}: {old} → {new}"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |changes: &[Change]| changes.iter().map(Change::to_string).collect::<Vec<_>>().join("; ");
        match self {
            Reason::Upstream(stage) => write!(f, "upstream `{stage}` will run"),
            Reason::Forced => f.write_str("forced"),
            Reason::Damaged(what) => write!(f, "cached result not usable: {what}"),
            Reason::Missing => f.write_str("not cached"),
            Reason::Changed { base: None, changes } => f.write_str(&list(changes)),
            Reason::Changed {
                base: Some(base),
                changes,
            } => write!(f, "unlike `{}`'s {}: {}", base.manifest, base.stage, list(changes)),
        }
    }
}

/// What `secvec plan` shows for one stage.
#[derive(Debug, serde::Serialize)]
pub struct PlanRow {
    pub stage: String,
    pub kind: String,
    pub action: Action,
    #[serde(rename = "why", skip_serializing_if = "Option::is_none", serialize_with = "as_text")]
    pub reason: Option<Reason>,
    /// The cache key, when it can be known before running (every input is cached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

fn as_text<S: serde::Serializer>(reason: &Option<Reason>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(reason.as_ref().expect("skipped when absent"))
}

/// Predicts a run without executing anything: which stages are cached, and why each other
/// stage would run. Stages below one that must run are reported as waiting on it, since their
/// key depends on bytes not produced yet.
pub fn explain(
    plan: &Plan,
    cache: Option<&Cache>,
    only: &[String],
    force: &[String],
) -> Result<Vec<PlanRow>, ManifestError> {
    let (selected, forced) = selection(plan, only, force)?;
    let mut known: Vec<Option<Digest>> = vec![None; plan.nodes.len()];
    let mut rows = Vec::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        if !selected[i] {
            continue;
        }
        let stale_up: Vec<&str> = node
            .upstream()
            .filter(|u| known[*u].is_none())
            .map(|u| plan.nodes[u].name.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut key = None;
        let reason = if let Some(first) = stale_up.iter().min() {
            Some(Reason::Upstream(first.to_string()))
        } else {
            let preimage = plan.preimage(i, &|u| known[u].expect("checked above"));
            let k = key_of(&preimage);
            key = Some(k.hex());
            let found = cache.map(|c| c.find(&k)).transpose().ok().flatten();
            match (found, forced[i]) {
                (Some(Found::Hit(_)), true) => Some(Reason::Forced),
                (Some(Found::Hit(entry)), false) => {
                    known[i] = Some(entry.output);
                    None
                }
                (Some(Found::Damaged(_, what)), _) => Some(Reason::Damaged(what)),
                (Some(Found::Miss) | None, _) => {
                    // A renamed run with no record of this stage compares with the base run's.
                    let own = cache.and_then(|c| c.record(&plan.manifest_name, &node.name));
                    let (previous, base) = match own {
                        Some(r) => (Some(r), None),
                        None if plan.base_name != plan.manifest_name => (
                            cache.and_then(|c| c.record(&plan.base_name, &node.name)),
                            Some(Base {
                                manifest: plan.base_name.clone(),
                                stage: node.name.clone(),
                            }),
                        ),
                        None => (None, None),
                    };
                    let changes = previous
                        .as_ref()
                        .and_then(|p| p.get("preimage"))
                        .map(|old| differences(plan, i, old, &preimage))
                        .unwrap_or_default();
                    Some(match changes.is_empty() {
                        true => Reason::Missing,
                        false => Reason::Changed { base, changes },
                    })
                }
            }
        };
        rows.push(PlanRow {
            stage: node.name.clone(),
            kind: node.kind.kind().to_string(),
            action: if reason.is_some() { Action::Run } else { Action::Cached },
            reason,
            key,
        });
    }
    Ok(rows)
}

/// Every value where node `i`'s pre-image differs from an earlier one, walking kind, version,
/// params, inputs and environment in that order so the list starts with the cause a user changed.
fn differences(plan: &Plan, i: usize, old: &Value, new: &Value) -> Vec<Change> {
    let change = |what: Changed| {
        move |(_, old, new): (String, String, String)| Change {
            what: what.clone(),
            old,
            new,
        }
    };
    let mut out: Vec<Change> = Vec::new();
    for (section, what) in [("kind", Changed::Kind), ("version", Changed::Version)] {
        out.extend(
            leaves(String::new(), old.get(section), new.get(section))
                .into_iter()
                .map(change(what)),
        );
    }
    let at = |what: fn(String) -> Changed| {
        move |(path, old, new): (String, String, String)| Change {
            what: what(path),
            old,
            new,
        }
    };
    out.extend(
        leaves(String::new(), old.get("params"), new.get("params"))
            .into_iter()
            .map(at(Changed::Param)),
    );
    let (old_inputs, new_inputs) = (old.get("inputs"), new.get("inputs"));
    let mut slots: Vec<&String> = [old_inputs, new_inputs]
        .iter()
        .flat_map(|m| m.and_then(Value::as_object).into_iter().flat_map(|m| m.keys()))
        .collect();
    slots.sort();
    slots.dedup();
    for slot in slots {
        let (a, b) = (
            old_inputs.and_then(|m| m.get(slot)),
            new_inputs.and_then(|m| m.get(slot)),
        );
        let from = |index: usize| {
            plan.nodes[i]
                .inputs
                .iter()
                .find(|(s, _)| s == slot)
                .and_then(|(_, sources)| sources.get(index))
                .map(|s| match s {
                    Source::Node(u) => format!("output of `{}`", plan.nodes[*u].name),
                    Source::Path { path, .. } => path.display().to_string(),
                })
                .unwrap_or_default()
        };
        let items = match (a, b) {
            (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
                a.iter().zip(b).map(|(a, b)| (Some(a), Some(b))).collect()
            }
            (a, b) => vec![(a, b)],
        };
        for (index, (a, b)) in items.into_iter().enumerate() {
            let what = Changed::Input {
                slot: slot.clone(),
                from: from(index),
            };
            out.extend(leaves(String::new(), a, b).into_iter().map(change(what)));
        }
    }
    out.extend(
        leaves(String::new(), old.get("environment"), new.get("environment"))
            .into_iter()
            .map(at(Changed::Environment)),
    );
    out
}

/// The leaves where two values differ, as `(path, old, new)`; digests shown by their first 12
/// hex digits.
fn leaves(path: String, old: Option<&Value>, new: Option<&Value>) -> Vec<(String, String, String)> {
    fn show(v: Option<&Value>) -> String {
        match v {
            None => "(absent)".to_string(),
            Some(Value::String(s)) if s.len() == 64 => s[..12].to_string(),
            Some(v) => v.to_string(),
        }
    }
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .flat_map(|k| leaves(join(&path, k), a.get(k), b.get(k)))
                .collect()
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => (0..a.len())
            .flat_map(|i| leaves(format!("{path}[{i}]"), a.get(i), b.get(i)))
            .collect(),
        (a, b) if a == b => Vec::new(),
        (a, b) => vec![(path, show(a), show(b))],
    }
}
