//! The manifest a user writes: typed model, overlays and `--set` overrides.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::error::{Location, ManifestError};
use crate::source::{join, read_yaml, LineIndex};
use crate::stage_ref::StageRef;

/// A secvec manifest: named stages forming a DAG through their inputs.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Names the run; outputs appear under `out/<name>/<stage>/`. Give ablation overlays their
    /// own name so their outputs sit beside the base run's.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Values every stage whose params have a field of the same name takes unless it sets its own.
    #[serde(default)]
    pub defaults: Defaults,
    /// Named files or directories that stage inputs bind by name, as they would a stage: e.g.
    /// `base: /models/Qwen2.5-Coder-3B` and `model: base`. An overlay or `--set sources.base=...`
    /// swaps one for every stage that reads it. Relative to the manifest, like `{path: ...}`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub sources: IndexMap<String, String>,
    /// Stages by name. A name may hold letters, digits, `_` and `-`.
    pub stages: IndexMap<String, StageSpec>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// `f32`, `bf16` or `f16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Params every stage of a kind takes unless it sets its own, e.g.
    /// `generate: {n: 100, temperature: 0.1}`: one place for an overlay to change them all.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(with = "IndexMap<String, serde_json::Map<String, serde_json::Value>>")]
    pub kinds: IndexMap<String, Mapping>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// The stage kind (`secvec kinds` lists them).
    pub kind: String,
    /// Parameters, typed per kind.
    #[serde(default)]
    #[schemars(with = "serde_json::Value")]
    pub params: Value,
    /// Input slots of the kind, each bound to other stages (`stage`, or `stage[*]` to gather all
    /// variants of a matrix stage) or to files on disk (`{path: ...}`).
    #[serde(default)]
    pub inputs: IndexMap<String, InputBinding>,
    /// Runs the stage once per combination of these param values (keys are param paths).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, Vec<serde_json::Value>>")]
    pub matrix: IndexMap<String, Vec<Value>>,
    /// Constant labels (e.g. `strategy: LPO`) that, like matrix values, name the stage's output
    /// (`stage@strategy=LPO`), are carried by every stage downstream and become report columns.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// What each attempt reserves (`cpus`, `memory`, `gpus`, `gpu_type`, `time`), overriding
    /// what the kind declares; a cluster's scheduler enforces them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<crate::resources::ResourceSpec>,
    /// Attempts after a failed one (a job killed, out of memory, preempted, out of time); an
    /// attempt after running out of memory or time gets twice as much.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum InputBinding {
    One(InputItem),
    Many(Vec<InputItem>),
}

/// Read as text first, so that a malformed stage reference gets its own error rather than
/// "matches no form of input".
impl<'de> Deserialize<'de> for InputBinding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<InputBinding, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Stage(String),
            Path { path: String },
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Binding {
            One(Item),
            Many(Vec<Item>),
        }
        let item = |i: Item| match i {
            Item::Stage(r) => r.parse().map(InputItem::Stage).map_err(serde::de::Error::custom),
            Item::Path { path } => Ok(InputItem::Path { path }),
        };
        match Binding::deserialize(d)? {
            Binding::One(i) => item(i).map(InputBinding::One),
            Binding::Many(items) => items
                .into_iter()
                .map(item)
                .collect::<Result<_, _>>()
                .map(InputBinding::Many),
        }
    }
}

impl InputBinding {
    pub fn items(&self) -> Vec<&InputItem> {
        match self {
            InputBinding::One(i) => vec![i],
            InputBinding::Many(v) => v.iter().collect(),
        }
    }

    pub fn items_mut(&mut self) -> Vec<&mut InputItem> {
        match self {
            InputBinding::One(i) => vec![i],
            InputBinding::Many(v) => v.iter_mut().collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum InputItem {
    /// Another stage's output: `name`, `name[*]` for every variant of a matrix stage, and
    /// either with `@key=value,...` for the variants with those matrix values.
    Stage(#[schemars(with = "String")] StageRef),
    /// A file or directory, relative to the manifest; `${SECVEC_DATA}` expands to the shared
    /// datasets (`$SECVEC_DATA`, else `../shared/data`) and `${SECVEC_HOME}` to the project
    /// folder (`$SECVEC_HOME`, else the one above the secvec executable holding `.venv`).
    Path { path: String },
}

impl InputItem {
    pub fn stage(&self) -> Option<&StageRef> {
        match self {
            InputItem::Stage(r) => Some(r),
            InputItem::Path { .. } => None,
        }
    }
}

/// A manifest with overlays and overrides applied, and where each of its values was written.
#[derive(Debug)]
pub struct LoadedManifest {
    pub manifest: Manifest,
    pub file: PathBuf,
    pub lines: LineIndex,
    /// Keys an overlay deleted with `null` (`stages.pairs`), with the overlay line that did it.
    pub deleted: Vec<(String, Option<Location>)>,
    /// The `name:` of the manifest file itself, before overlays and `--set`s renamed the run.
    pub base_name: String,
}

impl LoadedManifest {
    pub fn location(&self, path: &str) -> Option<Location> {
        self.lines.find(path)
    }
    /// The overlay line that deleted `path`, when one did.
    pub fn deleted_at(&self, path: &str) -> Option<Option<Location>> {
        self.deleted.iter().find(|(p, _)| p == path).map(|(_, at)| at.clone())
    }
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}

/// Reads a manifest, deep-merges each overlay onto it in order, then applies `--set` overrides.
pub fn load(file: &Path, overlays: &[PathBuf], sets: &[String]) -> Result<LoadedManifest, ManifestError> {
    let doc = read_yaml(file)?;
    let top = Some(Location::file(file, 1, 1));
    match &doc.value {
        Value::Null => {
            return Err(ManifestError::new(
                top,
                "the manifest is empty: it needs a `name:` and `stages:` (manifests/quickstart.yaml is an example)",
            ))
        }
        Value::Mapping(_) => {}
        _ => {
            return Err(ManifestError::new(
                top,
                "a manifest is a mapping with `name:` and `stages:`, not a single value or a list",
            ))
        }
    }
    let base_stages = stage_names(&doc.value);
    let base_name = doc.value["name"].as_str().unwrap_or_default().to_string();
    let mut value = doc.value;
    let mut lines = doc.lines;
    let mut deleted = Vec::new();
    let mut added_stages: Vec<(String, PathBuf)> = Vec::new();
    for overlay in overlays {
        if !overlay.is_file() {
            return Err(ManifestError::new(
                Some(Location::Arg(format!("-o {}", overlay.display()))),
                "overlay file not found; give the path of a YAML overlay",
            ));
        }
        let doc = read_yaml(overlay)?;
        let what = match &doc.value {
            Value::Mapping(_) => None,
            Value::Null => Some("the overlay is empty"),
            _ => Some("an overlay is a mapping of the manifest keys it changes, not a single value or a list"),
        };
        if let Some(what) = what {
            return Err(ManifestError::new(
                Some(Location::file(overlay, 1, 1)),
                format!("{what}: write the keys it changes, e.g. `stages: {{train: {{params: {{lr: 0.0001}}}}}}`"),
            ));
        }
        nulls(&doc.value, "", &mut |path| {
            deleted.push((path.to_string(), doc.lines.find(path)))
        });
        let stages_before: Vec<String> = stage_names(&value);
        for name in stage_names(&doc.value) {
            if !stages_before.contains(&name) && !doc.value["stages"][name.as_str()].is_null() {
                added_stages.push((name, overlay.clone()));
            }
        }
        merge_patch(&mut value, doc.value);
        lines.overlay(doc.lines);
    }
    for set in sets {
        apply_set(&mut value, set)?;
        let (path, _) = set.split_once('=').expect("apply_set checked the form");
        lines.insert(path.to_string(), Location::Arg(format!("--set {set}")));
    }
    let manifest: Manifest = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let err = e.into_inner().to_string();
        if let Some(field) = err.strip_prefix("missing field `").and_then(|f| f.split('`').next()) {
            let missing = join(&path, field);
            if let Some((_, at)) = deleted.iter().find(|(p, _)| *p == missing) {
                return ManifestError::new(
                    at.clone(),
                    format!(
                        "`{missing}: null` deletes a key every manifest needs; give it a value instead{}",
                        if missing == "name" {
                            " (an overlay with its own name puts its outputs beside the base run's)"
                        } else {
                            ""
                        }
                    ),
                );
            }
            // A stage an overlay adds without a kind is most often a misspelt stage it meant to change.
            let stage = path.strip_prefix("stages.").filter(|s| !s.contains('.'));
            if let (Some(stage), "kind") = (stage, field) {
                if let Some((_, overlay)) = added_stages.iter().find(|(s, _)| s == stage) {
                    return ManifestError::new(
                        lines.find(&path),
                        format!(
                            "overlay {} adds stage `{stage}`, which {} does not have, and a new stage needs a `kind`{}",
                            overlay.display(),
                            file.display(),
                            crate::error::did_you_mean(stage, base_stages.iter().map(String::as_str))
                        ),
                    );
                }
            }
        }
        ManifestError::new(lines.find(&path).or_else(|| top.clone()), field_message(&path, &err))
    })?;
    validate_names(&manifest, &lines)?;
    let manifest = bind_sources(manifest, &mut lines)?;
    Ok(LoadedManifest {
        manifest,
        file: file.to_path_buf(),
        lines,
        deleted,
        base_name,
    })
}

/// The stage names of a manifest or overlay value.
fn stage_names(value: &Value) -> Vec<String> {
    match &value["stages"] {
        Value::Mapping(m) => m.keys().filter_map(|k| k.as_str().map(String::from)).collect(),
        _ => Vec::new(),
    }
}

/// Calls `found` with the path of every key set to `null` in an overlay.
fn nulls(value: &Value, path: &str, found: &mut dyn FnMut(&str)) {
    if let Value::Mapping(m) = value {
        for (k, v) in m {
            let Some(k) = k.as_str() else { continue };
            let p = join(path, k);
            if v.is_null() {
                found(&p);
            } else {
                nulls(v, &p, found);
            }
        }
    }
}

pub(crate) fn field_message(path: &str, err: &str) -> String {
    let err = crate::error::plain_words(err.split(" at line ").next().unwrap_or(err));
    let err = err.as_str();
    let err = if err.contains("did not match any variant of untagged enum Binding") {
        "an input must be a stage name, `stage[*]`, `stage@key=value`, `{path: ...}`, or a list of those".to_string()
    } else {
        err.to_string()
    };
    if path.is_empty() {
        err
    } else {
        format!("`{path}`: {err}")
    }
}

fn validate_names(m: &Manifest, lines: &LineIndex) -> Result<(), ManifestError> {
    let ok = |s: &str, extra: &[char]| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
    };
    // The name is a folder under out/ and in the cache: `.` and `..` would leave them.
    if !ok(&m.name, &['.']) || m.name.chars().all(|c| c == '.') {
        return Err(ManifestError::new(
            lines.find("name"),
            format!(
                "manifest name `{}` may hold only letters, digits, `.`, `_` and `-`, and not only dots",
                m.name
            ),
        ));
    }
    for (name, spec) in &m.stages {
        if !ok(name, &[]) {
            return Err(ManifestError::new(
                lines.find(&join("stages", name)),
                format!("stage name `{name}` may hold only letters, digits, `_` and `-`"),
            ));
        }
        for (key, value) in &spec.labels {
            let text = |s: &str| Value::String(s.to_string());
            if let Some(bad) = unsafe_path_part(&text(key)).or_else(|| unsafe_path_part(&text(value))) {
                return Err(ManifestError::new(
                    lines.find(&join(&join(&join("stages", name), "labels"), key)),
                    format!("stage `{name}`: label `{key}: {value}`: `{bad}` would be part of a path (out/<manifest>/{name}@{key}={value}): neither may hold `/` or NUL, or be `.` or `..`"),
                ));
            }
        }
        for (key, values) in &spec.matrix {
            if let Some(bad) = values.iter().find_map(unsafe_path_part) {
                return Err(ManifestError::new(
                    lines.find(&join(&join(&join("stages", name), "matrix"), key)),
                    format!(
                        "stage `{name}`: matrix value `{bad}` of `{key}` would be part of a path (out/<manifest>/{name}@{key}=…): it may not hold `/` or NUL, or be `.` or `..`"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Replaces each input naming a source with that source's path.
/// Errors about such an input (a missing path) point at the source's line.
fn bind_sources(mut m: Manifest, lines: &mut LineIndex) -> Result<Manifest, ManifestError> {
    if let Some(name) = m.sources.keys().find(|s| m.stages.contains_key(*s)) {
        return Err(ManifestError::new(
            lines.find(&join("sources", name)),
            format!(
                "`{name}` is both a source and a stage; rename one, or delete the other with `null` in the overlay"
            ),
        ));
    }
    for (name, spec) in m.stages.iter_mut() {
        for (slot, binding) in spec.inputs.iter_mut() {
            for item in binding.items_mut() {
                if let Some(r) = item.stage().and_then(StageRef::plain) {
                    if let Some(path) = m.sources.get(r) {
                        if let Some(at) = lines.find(&join("sources", r)) {
                            lines.insert(format!("stages.{name}.inputs.{slot}"), at);
                        }
                        *item = InputItem::Path { path: path.clone() };
                    }
                }
            }
        }
    }
    Ok(m)
}

/// A text in a matrix value that cannot be part of a variant's folder name.
fn unsafe_path_part(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.contains(['/', '\0']) || s == "." || s == ".." => Some(s.clone()),
        Value::Sequence(items) => items.iter().find_map(unsafe_path_part),
        _ => None,
    }
}

/// JSON-merge-patch semantics (RFC 7396) on YAML: mappings merge key by key, `null` deletes a
/// key, anything else replaces.
pub fn merge_patch(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Mapping(b), Value::Mapping(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else if let Some(existing) = b.get_mut(&k) {
                    merge_patch(existing, v);
                } else {
                    let mut fresh = Value::Mapping(Mapping::new());
                    merge_patch(&mut fresh, v);
                    b.insert(k, fresh);
                }
            }
        }
        (b, p) => *b = p,
    }
}

/// Applies one `--set dotted.path=value` override; the value is read as YAML (`null` deletes).
pub fn apply_set(root: &mut Value, set: &str) -> Result<(), ManifestError> {
    let here = || Some(Location::Arg(format!("--set {set}")));
    let (path, raw) = set
        .split_once('=')
        .ok_or_else(|| ManifestError::new(here(), "expected KEY=VALUE, e.g. stages.train.params.lr=0.0002"))?;
    let parts = dotted(path).map_err(|what| ManifestError::new(here(), what))?;
    if parts[0] == "stages" {
        let known = root.get("stages").and_then(|s| s.as_mapping());
        match parts.get(1).map(String::as_str) {
            None => return Err(ManifestError::new(here(), "name a stage: stages.NAME.params.KEY=VALUE")),
            Some(stage) if known.map(|m| !m.contains_key(stage)).unwrap_or(true) => {
                let names: Vec<&str> = known
                    .map(|m| m.keys().filter_map(|k| k.as_str()).collect())
                    .unwrap_or_default();
                return Err(ManifestError::new(
                    here(),
                    format!(
                        "no stage `{stage}` in the manifest{}",
                        crate::error::did_you_mean(stage, names)
                    ),
                ));
            }
            Some(stage) => {
                if let Some(swept) = swept_by_matrix(root, stage, &parts[2..]) {
                    return Err(ManifestError::new(
                        here(),
                        format!(
                            "stage `{stage}` sweeps `{swept}` in its matrix, whose values would replace this one in \
                             every variant; to run other values, set the matrix: `--set stages.{stage}.matrix.{swept}=[{raw}]`",
                            raw = set.split_once('=').map_or("", |(_, v)| v)
                        ),
                    ));
                }
            }
        }
    }
    let top_level = ["name", "description", "defaults", "sources", "stages"];
    let is_stage = root
        .get("stages")
        .and_then(|s| s.as_mapping())
        .is_some_and(|m| m.contains_key(parts[0].as_str()));
    if is_stage && !top_level.contains(&parts[0].as_str()) {
        return Err(ManifestError::new(
            here(),
            format!(
                "`{}` is a stage: the path starts with `stages.`, as in `--set stages.{set}`",
                parts[0]
            ),
        ));
    }
    let value: Value = serde_yaml::from_str(raw)
        .map_err(|e| ManifestError::new(here(), format!("value `{raw}` is not valid YAML: {e}")))?;
    set_path(root, path, value).map_err(|what| ManifestError::new(here(), what))
}

/// The keys of a dotted path; a list item is `tables.0` or `tables[0]`.
fn dotted(path: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            parts.push(key.to_string());
        } else if rest.is_empty() {
            return Err(format!("`{path}` is not a dotted key path"));
        }
        while let Some(open) = rest.strip_prefix('[') {
            let (index, after) = open
                .split_once(']')
                .ok_or_else(|| format!("`{path}`: a `[` without its `]`"))?;
            if index.parse::<usize>().is_err() {
                return Err(format!(
                    "`{path}`: `[{index}]` is not a list index; write a number, as in `tables[0]`"
                ));
            }
            parts.push(index.to_string());
            rest = after;
        }
        if !rest.is_empty() {
            return Err(format!("`{path}`: `{rest}` after a list index; write `key[0].field`"));
        }
    }
    Ok(parts)
}

/// The matrix key of stage `stage` that `rest` (`params.theta`, below the stage) sets or lies
/// within, if any.
fn swept_by_matrix(root: &Value, stage: &str, rest: &[String]) -> Option<String> {
    let (first, param) = rest.split_first()?;
    if first != "params" || param.is_empty() {
        return None;
    }
    let param = param.join(".");
    let matrix = root.get("stages")?.get(stage)?.get("matrix")?.as_mapping()?;
    matrix.keys().filter_map(|k| k.as_str()).find_map(|key| {
        let within = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}."));
        (within(&param, key) || within(key, &param)).then(|| key.to_string())
    })
}

/// Sets the value at a dotted path (`params.lora.r`, list items by index), creating mappings
/// on the way; a `null` value deletes the key. Shared by `--set` and matrix values.
pub(crate) fn set_path(root: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let parts = dotted(path)?;
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        node = match node {
            Value::Mapping(map) => {
                let key = Value::String(part.to_string());
                if last {
                    if value.is_null() {
                        map.remove(&key);
                    } else {
                        map.insert(key, value);
                    }
                    return Ok(());
                }
                map.entry(key).or_insert_with(|| Value::Mapping(Mapping::new()))
            }
            Value::Sequence(seq) => {
                let idx: usize = part.parse().ok().filter(|i| *i < seq.len()).ok_or_else(|| {
                    format!(
                        "`{part}` is not an index of the list at that point of `{path}`, which has {} item(s), from 0",
                        seq.len()
                    )
                })?;
                if last {
                    seq[idx] = value;
                    return Ok(());
                }
                &mut seq[idx]
            }
            _ => {
                return Err(format!(
                    "`{}` is a scalar; cannot set a key inside it",
                    parts[..i].join(".")
                ))
            }
        };
    }
    unreachable!("the loop returns at the last part")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn merge_patch_merges_replaces_and_deletes() {
        let mut base = y("a: {b: 1, c: [1, 2], d: x}\ne: 3");
        merge_patch(&mut base, y("a: {b: 2, c: [9], d: null}\nf: {g: 1}"));
        assert_eq!(base, y("a: {b: 2, c: [9]}\ne: 3\nf: {g: 1}"));
    }

    #[test]
    fn set_overrides_and_creates_nested_keys() {
        let mut m = y("stages: {t: {kind: k, params: {lr: 1}}}");
        apply_set(&mut m, "stages.t.params.lr=0.5").unwrap();
        apply_set(&mut m, "stages.t.params.lora.r=8").unwrap();
        apply_set(&mut m, "stages.t.params.tags=[a, b]").unwrap();
        assert_eq!(
            m,
            y("stages: {t: {kind: k, params: {lr: 0.5, lora: {r: 8}, tags: [a, b]}}}")
        );
        apply_set(&mut m, "stages.t.params.lora=null").unwrap();
        assert_eq!(m, y("stages: {t: {kind: k, params: {lr: 0.5, tags: [a, b]}}}"));
        // A list item by index, written either way.
        apply_set(&mut m, "stages.t.params.tags[1]=c").unwrap();
        apply_set(&mut m, "stages.t.params.tags.0=d").unwrap();
        assert_eq!(m, y("stages: {t: {kind: k, params: {lr: 0.5, tags: [d, c]}}}"));
    }

    #[test]
    fn a_set_of_a_key_the_matrix_sweeps_says_how_to_set_the_matrix() {
        let mut m = y("stages: {t: {kind: k, params: {lr: 1}, matrix: {lr: [1, 2], lora.r: [4, 8]}}}");
        for set in [
            "stages.t.params.lr=3",
            "stages.t.params.lora.r=16",
            "stages.t.params.lora={r: 16}",
        ] {
            let err = apply_set(&mut m, set).unwrap_err().to_string();
            assert!(
                err.contains("sweeps") && err.contains("--set stages.t.matrix."),
                "{set}: {err}"
            );
        }
        apply_set(&mut m, "stages.t.params.lora_alpha=16").unwrap();
        apply_set(&mut m, "stages.t.matrix.lr=[3]").unwrap();
    }

    #[test]
    fn bad_sets_are_rejected_with_a_reason() {
        let mut m = y("stages: {t: {kind: k, params: {lr: 1}}}");
        for (set, want) in [
            ("stages.t.params.lr", "KEY=VALUE"),
            ("stages..x=1", "dotted"),
            ("stages.u.params.x=1", "no stage `u`"),
            ("stages.t.params.lr.x=1", "scalar"),
            ("stages.t.params.tags[x]=1", "not a list index"),
            ("stages.t.params.tags[0=1", "without its `]`"),
            (
                "t.params.lr=2",
                "`t` is a stage: the path starts with `stages.`, as in `--set stages.t.params.lr=2`",
            ),
        ] {
            let err = apply_set(&mut m, set).unwrap_err().to_string();
            assert!(err.contains(want), "{set}: {err}");
        }
    }
}
