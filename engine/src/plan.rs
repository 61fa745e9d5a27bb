//! From a loaded manifest to concrete stages: kinds, inputs, matrix expansion, typed params, and
//! the checks that make a manifest runnable (dangling inputs, cycles, type mismatches).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use petgraph::graph::DiGraph;
use secvec_cache::{Digest, StatCache};
use secvec_stage::{DynStage, InputSlot, Registry, Resources, Upstream, Upstreams};
use serde_json::{json, Value};

use crate::error::{did_you_mean, Location, ManifestError};
use crate::manifest::{field_message, InputItem, LoadedManifest, StageSpec};
use crate::source::join;
use crate::stage_ref::StageRef;

/// Where one input artifact comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// The output of another node (by index into [`Plan::nodes`]).
    Node(usize),
    /// A file or directory on disk, hashed when the plan was made.
    Path { path: PathBuf, digest: Digest },
}

/// One concrete stage: a manifest stage, or one variant of a matrix stage.
pub struct Node {
    /// `stage`, or `stage@key=value,...` for a matrix variant.
    pub name: String,
    /// The manifest stage it came from.
    pub base: String,
    pub kind: Arc<dyn DynStage>,
    pub params: Value,
    pub labels: IndexMap<String, String>,
    pub inputs: Vec<(String, Vec<Source>)>,
    pub resources: Resources,
    /// Attempts after a failed one.
    pub retries: u32,
    /// The identity of the tools and environment the stage depends on (`Null`: none).
    pub environment: Value,
}

impl Node {
    pub fn upstream(&self) -> impl Iterator<Item = usize> + '_ {
        self.inputs.iter().flat_map(|(_, s)| s).filter_map(|s| match s {
            Source::Node(i) => Some(*i),
            Source::Path { .. } => None,
        })
    }
}

/// Concrete stages in an order where every node comes after its inputs.
pub struct Plan {
    pub manifest_name: String,
    /// The manifest file's own name; a renamed run (an ablation overlay's `name:`) compares
    /// with that run's records where it has none of its own.
    pub base_name: String,
    pub nodes: Vec<Node>,
}

impl Plan {
    /// Nodes matching a selector: an exact node name, or a manifest stage name (all its variants).
    pub fn select(&self, selector: &str) -> Result<Vec<usize>, ManifestError> {
        let hits: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].name == selector || self.nodes[i].base == selector)
            .collect();
        if hits.is_empty() {
            let names = self.nodes.iter().map(|n| n.name.as_str());
            return Err(ManifestError::new(
                Some(Location::Arg(selector.to_string())),
                format!(
                    "no stage `{selector}` in this manifest{}",
                    did_you_mean(selector, names)
                ),
            ));
        }
        Ok(hits)
    }

    /// The cache-key pre-image of a node, given the content digests of its inputs.
    pub fn preimage(&self, i: usize, output_of: &dyn Fn(usize) -> Digest) -> Value {
        let node = &self.nodes[i];
        let inputs: serde_json::Map<String, Value> = node
            .inputs
            .iter()
            .map(|(slot, sources)| {
                let items: Vec<Value> = sources
                    .iter()
                    .map(|s| match s {
                        Source::Node(u) if node.kind.reads_upstream_names() => json!({
                            "digest": output_of(*u), "labels": self.nodes[*u].labels, "stage": self.nodes[*u].base
                        }),
                        Source::Node(u) => json!({"digest": output_of(*u), "labels": self.nodes[*u].labels}),
                        Source::Path { digest, .. } => json!({"digest": digest, "labels": {}}),
                    })
                    .collect();
                (slot.clone(), Value::Array(items))
            })
            .collect();
        let speed = node.kind.speed_params();
        let params = match &node.params {
            Value::Object(map) if !speed.is_empty() => Value::Object(
                map.iter()
                    .filter(|(k, _)| !speed.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            _ => node.params.clone(),
        };
        let mut preimage = json!({
            "kind": node.kind.kind(),
            "version": node.kind.version(),
            "params": params,
            "inputs": inputs,
        });
        if !node.environment.is_null() {
            preimage["environment"] = node.environment.clone();
        }
        preimage
    }
}

const DATA: &str = "${SECVEC_DATA}";
const HOME: &str = "${SECVEC_HOME}";

/// Resolves `${SECVEC_DATA}` (the shared datasets) and `${SECVEC_HOME}` (the project folder,
/// [`secvec_stage::home`]) at a path's start, and makes any other path relative to the
/// manifest's directory.
pub fn resolve_input_path(raw: &str, manifest_dir: &Path) -> PathBuf {
    if let Some(rest) = raw.strip_prefix(DATA) {
        let root = std::env::var_os("SECVEC_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("../shared/data"));
        return root.join(rest.trim_start_matches('/'));
    }
    if let Some(rest) = raw.strip_prefix(HOME) {
        // Without a project folder the path stays as written, and checking it names why.
        return match secvec_stage::home::home() {
            Some(root) => root.join(rest.trim_start_matches('/')),
            None => PathBuf::from(raw),
        };
    }
    manifest_dir.join(raw)
}

struct Partial {
    labels: IndexMap<String, String>,
    assignments: Vec<(String, serde_yaml::Value)>,
    chosen: HashMap<StageRef, usize>,
}

fn compatible(a: &IndexMap<String, String>, b: &IndexMap<String, String>) -> bool {
    a.iter().all(|(k, v)| b.get(k).map(|w| w == v).unwrap_or(true))
}

/// A stage's own `labels` replace the same keys from upstream (an LPO adapter trained from an SFT
/// one is `strategy=LPO`), so they never make its inputs disagree.
fn own_labels_win(mut carried: IndexMap<String, String>, spec: &StageSpec) -> IndexMap<String, String> {
    carried.retain(|k, _| !spec.labels.contains_key(k));
    carried
}

fn label_value(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Sequence(items) => items.iter().map(label_value).collect::<Vec<_>>().join("+"),
        other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

/// Builds the concrete plan. Nothing is read but the manifest and its `{path:}` inputs, whose
/// files are hashed only when `stat` does not know them unchanged.
pub fn build(loaded: &LoadedManifest, registry: &Registry, stat: &mut StatCache) -> Result<Plan, ManifestError> {
    let m = &loaded.manifest;
    let loc = |p: String| loaded.location(&p);
    let stage_path = |name: &str| join("stages", name);

    for kind in m.defaults.kinds.keys() {
        if registry.get(kind).is_none() {
            let known: Vec<&str> = registry.kinds().map(|k| k.kind()).collect();
            return Err(ManifestError::new(
                loc(join("defaults.kinds", kind)),
                format!(
                    "defaults for unknown kind `{kind}`{}; known kinds: {}",
                    did_you_mean(kind, known.iter().copied()),
                    known.join(", ")
                ),
            ));
        }
    }
    // Kinds and input slots, per manifest stage.
    let mut kinds: IndexMap<&str, Arc<dyn DynStage>> = IndexMap::new();
    for (name, spec) in &m.stages {
        let kind = registry.get(&spec.kind).ok_or_else(|| {
            let known: Vec<&str> = registry.kinds().map(|k| k.kind()).collect();
            ManifestError::new(
                loc(join(&stage_path(name), "kind")),
                format!(
                    "stage `{name}`: unknown kind `{}`{}; known kinds: {}",
                    spec.kind,
                    did_you_mean(&spec.kind, known.iter().copied()),
                    known.join(", ")
                ),
            )
        })?;
        kinds.insert(name, kind);
    }
    // Dependency graph between manifest stages; reject cycles, naming every stage in one.
    let mut graph = DiGraph::<&str, ()>::new();
    let ids: IndexMap<&str, _> = m
        .stages
        .keys()
        .map(|n| (n.as_str(), graph.add_node(n.as_str())))
        .collect();
    for (name, spec) in &m.stages {
        for (slot, binding) in &spec.inputs {
            for item in binding.items() {
                let InputItem::Stage(r) = item else { continue };
                let up = r.stage.as_str();
                let Some(&from) = ids.get(up) else {
                    if let Some(at) = loaded.deleted_at(&stage_path(up)) {
                        let user = loc(format!("{}.inputs.{slot}", stage_path(name)))
                            .map(|l| format!(" ({l})"))
                            .unwrap_or_default();
                        return Err(ManifestError::new(
                            at,
                            format!(
                                "this overlay deletes stage `{up}`, but stage `{name}`{user} still reads it as input `{slot}`; delete `{name}` too (`{name}: null`) or bind its input to another stage"
                            ),
                        ));
                    }
                    return Err(ManifestError::new(
                        loc(format!("{}.inputs.{slot}", stage_path(name))),
                        format!(
                            "stage `{name}`: input `{slot}` refers to unknown stage `{up}`{}",
                            did_you_mean(up, ids.keys().copied())
                        ),
                    ));
                };
                graph.add_edge(from, ids[name.as_str()], ());
            }
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() > 1 || self_loop {
            let mut names: Vec<&str> = scc.iter().map(|i| graph[*i]).collect();
            names.sort_by_key(|n| ids.get_index_of(n));
            return Err(ManifestError::new(
                loc(join(&stage_path(names[0]), "inputs")),
                format!(
                    "the inputs of stages {} form a cycle; a stage cannot depend on its own output",
                    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    for (name, spec) in &m.stages {
        check_inputs(loaded, name, spec, &kinds)?;
    }
    let order = manifest_order_toposort(&graph);

    // Expand in dependency order so each stage sees its upstream variants.
    let mut nodes: Vec<Node> = Vec::new();
    let mut variants: HashMap<&str, Vec<usize>> = HashMap::new();
    // Many stages often read the same folder; hash each path once per plan.
    let mut hashed: HashMap<PathBuf, Digest> = HashMap::new();
    for id in order {
        let name = graph[id];
        let spec = &m.stages[name];
        let kind = kinds[name].clone();
        // Which manifest defaults apply: the same for every variant, so read once.
        let accepted = kind.param_names();
        let mut partials = own_combinations(spec);
        for (slot, binding) in &spec.inputs {
            for item in binding.items() {
                let InputItem::Stage(sel) = item else { continue };
                let up = sel.stage.as_str();
                if !sel.select.is_empty() && !variants[up].iter().any(|&v| sel.picks(&nodes[v].labels)) {
                    let names: Vec<&str> = variants[up].iter().map(|&v| nodes[v].name.as_str()).collect();
                    return Err(ManifestError::new(
                        loc(format!("{}.inputs.{slot}", stage_path(name))),
                        format!(
                            "stage `{name}`: input `{slot}`: no variant of `{up}` matches `{sel}`; its variants are {}",
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
        for item in spec.inputs.values().flat_map(|b| b.items()) {
            let InputItem::Stage(sel) = item else { continue };
            if sel.gather {
                continue;
            }
            if partials.iter().all(|p| p.chosen.contains_key(sel)) {
                continue;
            }
            let mut next = Vec::new();
            for p in partials {
                for &v in &variants[sel.stage.as_str()] {
                    let carried = own_labels_win(sel.carried(&nodes[v].labels), spec);
                    if sel.picks(&nodes[v].labels) && compatible(&p.labels, &carried) {
                        let mut labels = p.labels.clone();
                        for (k, val) in carried {
                            labels.entry(k).or_insert(val);
                        }
                        let mut chosen = p.chosen.clone();
                        chosen.insert(sel.clone(), v);
                        next.push(Partial {
                            labels,
                            assignments: p.assignments.clone(),
                            chosen,
                        });
                    }
                }
            }
            partials = next;
        }
        if partials.is_empty() {
            return Err(ManifestError::new(
                loc(join(&stage_path(name), "inputs")),
                format!("stage `{name}`: no variant of its inputs agrees on their matrix values"),
            ));
        }
        let mut mine = Vec::new();
        for p in partials {
            let mut inputs = Vec::new();
            for (slot, binding) in &spec.inputs {
                let mut sources = Vec::new();
                for (j, item) in binding.items().into_iter().enumerate() {
                    match item {
                        InputItem::Path { path } => {
                            let resolved = resolve_input_path(path, loaded.dir());
                            let at = loc(format!("{}.inputs.{slot}", stage_path(name)));
                            let at = loaded
                                .location(&format!("{}.inputs.{slot}[{j}]", stage_path(name)))
                                .or(at);
                            let digest = match hashed.get(&resolved) {
                                Some(d) => *d,
                                None => {
                                    let d = hash_source(&resolved, path, at, stat)?;
                                    hashed.insert(resolved.clone(), d);
                                    d
                                }
                            };
                            sources.push(Source::Path { path: resolved, digest });
                        }
                        InputItem::Stage(sel) => match sel.gather {
                            false => sources.push(Source::Node(p.chosen[sel])),
                            true => sources.extend(
                                variants[sel.stage.as_str()]
                                    .iter()
                                    .filter(|&&v| {
                                        sel.picks(&nodes[v].labels)
                                            && compatible(
                                                &p.labels,
                                                &own_labels_win(sel.carried(&nodes[v].labels), spec),
                                            )
                                    })
                                    .map(|&v| Source::Node(v)),
                            ),
                        },
                    }
                }
                inputs.push((slot.clone(), sources));
            }
            let node_name = if p.labels.is_empty() {
                name.to_string()
            } else {
                let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{name}@{}", labels.join(","))
            };
            let params = resolve_params(loaded, name, spec, &kind, &accepted, &p.assignments)?;
            let settled = kind.settle(&params).map_err(|e| {
                ManifestError::new(
                    loc(join(&stage_path(name), "params")),
                    format!("stage `{node_name}` (kind `{}`) cannot run here: {e:#}", kind.kind()),
                )
            })?;
            let upstream = upstreams(&inputs, &nodes);
            kind.check(&settled.params, &upstream).map_err(|e| {
                ManifestError::new(
                    param_location(loaded, name, &e.path),
                    format!("stage `{node_name}` (kind `{}`): {e}", kind.kind()),
                )
            })?;
            mine.push(nodes.len());
            nodes.push(Node {
                name: node_name,
                base: name.to_string(),
                kind: kind.clone(),
                params: settled.params,
                labels: p.labels,
                inputs,
                resources: match &spec.resources {
                    Some(o) => o.apply(settled.resources),
                    None => settled.resources,
                },
                retries: spec.retries,
                environment: settled.environment,
            });
        }
        variants.insert(name, mine);
    }
    Ok(Plan {
        manifest_name: m.name.clone(),
        base_name: loaded.base_name.clone(),
        nodes,
    })
}

/// What a concrete stage's input slots will receive, as the plan knows it before anything runs.
fn upstreams(inputs: &[(String, Vec<Source>)], nodes: &[Node]) -> Upstreams {
    let slots = inputs
        .iter()
        .map(|(slot, sources)| {
            let given = sources
                .iter()
                .map(|source| match source {
                    Source::Node(v) => {
                        let up = &nodes[*v];
                        Upstream {
                            labels: up.labels.keys().cloned().collect(),
                            fields: up.kind.result_fields(&up.params),
                        }
                    }
                    Source::Path { .. } => Upstream {
                        labels: Vec::new(),
                        fields: None,
                    },
                })
                .collect();
            (slot.clone(), given)
        })
        .collect();
    Upstreams { slots }
}

/// The line of a param (`tables[0].columns[2]`) of stage `name`, or of the nearest value around
/// it that the manifest wrote (a default, or a list written whole).
fn param_location(loaded: &LoadedManifest, name: &str, path: &str) -> Option<Location> {
    let stage = join("stages", name);
    let params = join(&stage, "params");
    let mut path = if path.is_empty() { params } else { join(&params, path) };
    loop {
        if let Some(at) = loaded.location(&path) {
            return Some(at);
        }
        match path.rfind(['.', '[']) {
            Some(cut) if path.len() > stage.len() => path.truncate(cut),
            _ => return loaded.location(&stage),
        }
    }
}

/// A topological order that otherwise keeps the manifest's order, so plans read top to bottom.
fn manifest_order_toposort(graph: &DiGraph<&str, ()>) -> Vec<petgraph::graph::NodeIndex> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut indegree: Vec<usize> = graph
        .node_indices()
        .map(|n| graph.neighbors_directed(n, petgraph::Direction::Incoming).count())
        .collect();
    let mut ready: BinaryHeap<Reverse<usize>> = graph
        .node_indices()
        .filter(|n| indegree[n.index()] == 0)
        .map(|n| Reverse(n.index()))
        .collect();
    let mut order = Vec::with_capacity(indegree.len());
    while let Some(Reverse(i)) = ready.pop() {
        let n = petgraph::graph::NodeIndex::new(i);
        order.push(n);
        for m in graph.neighbors_directed(n, petgraph::Direction::Outgoing) {
            indegree[m.index()] -= 1;
            if indegree[m.index()] == 0 {
                ready.push(Reverse(m.index()));
            }
        }
    }
    order
}

fn own_combinations(spec: &StageSpec) -> Vec<Partial> {
    let mut out = vec![Partial {
        labels: spec.labels.clone(),
        assignments: Vec::new(),
        chosen: HashMap::new(),
    }];
    for (key, values) in &spec.matrix {
        out = out
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut labels = p.labels.clone();
                    labels.insert(key.clone(), label_value(v));
                    let mut assignments = p.assignments.clone();
                    assignments.push((key.clone(), v.clone()));
                    Partial {
                        labels,
                        assignments,
                        chosen: p.chosen.clone(),
                    }
                })
            })
            .collect();
    }
    out
}

fn hash_source(path: &Path, raw: &str, at: Option<Location>, stat: &mut StatCache) -> Result<Digest, ManifestError> {
    if !path.exists() {
        let hint = if raw.starts_with(DATA) {
            "; set $SECVEC_DATA to the datasets folder or put them at ../shared/data"
        } else if raw.starts_with(HOME) {
            "; `${SECVEC_HOME}` is $SECVEC_HOME, else the folder above the secvec executable that holds \
             .venv (the project where scripts/setup.sh ran)"
        } else {
            "; paths are relative to the manifest's folder"
        };
        return Err(ManifestError::new(
            at,
            format!("input path {} does not exist{hint}", path.display()),
        ));
    }
    stat.hash_path(path)
        .map_err(|e| ManifestError::new(at, format!("cannot read input {}: {e}", path.display())))
}

fn check_inputs(
    loaded: &LoadedManifest,
    name: &str,
    spec: &StageSpec,
    kinds: &IndexMap<&str, Arc<dyn DynStage>>,
) -> Result<(), ManifestError> {
    let kind = &kinds[name];
    let slots = kind.inputs();
    let base = join("stages", name);
    let slot_list = || {
        slots
            .iter()
            .map(|s| format!("`{}`", s.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (slot_name, binding) in &spec.inputs {
        let at = || loaded.location(&format!("{base}.inputs.{slot_name}"));
        let slot: &InputSlot = slots.iter().find(|s| s.name == slot_name).ok_or_else(|| {
            ManifestError::new(
                at(),
                format!(
                    "stage `{name}`: kind `{}` has no input `{slot_name}`{}; its inputs are {}",
                    kind.kind(),
                    did_you_mean(slot_name, slots.iter().map(|s| s.name)),
                    slot_list()
                ),
            )
        })?;
        let items = binding.items();
        let gathers = items.iter().any(|i| matches!(i, InputItem::Stage(r) if r.gather));
        if !slot.many && (items.len() != 1 || gathers) {
            return Err(ManifestError::new(
                at(),
                format!("stage `{name}`: input `{slot_name}` takes exactly one artifact"),
            ));
        }
        for item in items {
            let fits = match item {
                InputItem::Path { .. } => slot.accepts_files(),
                InputItem::Stage(r) => kinds[r.stage.as_str()]
                    .output_tags()
                    .iter()
                    .any(|t| slot.accepts.contains(t)),
            };
            if !fits {
                let given = match item {
                    InputItem::Path { .. } => "a path".to_string(),
                    InputItem::Stage(r) => {
                        let up = r.stage.as_str();
                        let tags = kinds[up]
                            .output_tags()
                            .iter()
                            .map(|t| format!("`{t}`"))
                            .collect::<Vec<_>>()
                            .join(", ");
                        format!("stage `{up}` (kind `{}`), which produces {tags}", kinds[up].kind())
                    }
                };
                return Err(ManifestError::new(
                    at(),
                    format!(
                        "stage `{name}`: input `{slot_name}` takes {}, not {given}",
                        slot.describe()
                    ),
                ));
            }
        }
    }
    if let Some(missing) = slots.iter().find(|s| !s.optional && !spec.inputs.contains_key(s.name)) {
        return Err(ManifestError::new(
            loaded.location(&base),
            format!("stage `{name}`: input `{}` is required ({})", missing.name, missing.doc),
        ));
    }
    Ok(())
}

fn resolve_params(
    loaded: &LoadedManifest,
    name: &str,
    spec: &StageSpec,
    kind: &Arc<dyn DynStage>,
    accepted: &[String],
    assignments: &[(String, serde_yaml::Value)],
) -> Result<Value, ManifestError> {
    let params_path = format!("stages.{name}.params");
    let mut params = match &spec.params {
        serde_yaml::Value::Null => serde_yaml::Value::Mapping(Default::default()),
        serde_yaml::Value::Mapping(m) => serde_yaml::Value::Mapping(m.clone()),
        _ => {
            return Err(ManifestError::new(
                loaded.location(&params_path),
                format!("stage `{name}`: params must be a mapping"),
            ))
        }
    };
    for (key, value) in assignments {
        crate::manifest::set_path(&mut params, key, value.clone())
            .map_err(|what| ManifestError::new(loaded.location(&format!("stages.{name}.matrix.{key}")), what))?;
    }
    let defaults = &loaded.manifest.defaults;
    if let serde_yaml::Value::Mapping(map) = &mut params {
        if let Some(own) = defaults.kinds.get(&spec.kind) {
            for (k, v) in own {
                if !map.contains_key(k) {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
        let shared = [
            (
                "device",
                defaults.device.as_ref().map(|d| serde_yaml::Value::from(d.as_str())),
            ),
            (
                "dtype",
                defaults.dtype.as_ref().map(|d| serde_yaml::Value::from(d.as_str())),
            ),
            ("seed", defaults.seed.map(serde_yaml::Value::from)),
        ];
        for (k, v) in shared {
            let key = serde_yaml::Value::String(k.to_string());
            if let Some(v) = v.filter(|_| accepted.iter().any(|a| a == k) && !map.contains_key(&key)) {
                map.insert(key, v);
            }
        }
    }
    kind.check_params(params).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." {
            params_path.clone()
        } else {
            format!("{params_path}.{inner}")
        };
        let mut msg = field_message(&path, &e.into_inner().to_string());
        if !spec.matrix.is_empty() {
            msg.push_str(" (with the stage's matrix values applied)");
        }
        ManifestError::new(
            loaded.location(&path),
            format!("stage `{name}` (kind `{}`): {msg}", kind.kind()),
        )
    })
}
