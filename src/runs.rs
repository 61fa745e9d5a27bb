//! Run records: every `secvec run` leaves one under the cache (`runs/<id>.json`), with what was
//! asked (manifest, overlays, `--set`s), every stage's resolved params, key, output and status,
//! and a summary of each stage's `results.json`, so that runs can be listed, diffed and compared
//! after their outputs are gone. `cache gc` keeps them unless told otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use secvec_artifacts::results::Results;
use secvec_cache::{Cache, Digest};
use secvec_engine::plan::Plan;
use secvec_engine::progress::{Outcome, Status};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exit {
    Ok,
    Failed,
    Interrupted,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// `20261203T114502.123Z-3f9a`: when it started (UTC, so ids sort by time), and four hex
    /// digits that keep two runs of the same millisecond apart.
    pub id: String,
    pub started: String,
    pub seconds: f64,
    pub manifest: PathBuf,
    pub name: String,
    pub overlays: Vec<PathBuf>,
    pub sets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub force: Vec<String>,
    pub exit: Exit,
    /// By concrete stage name, in plan order.
    pub stages: BTreeMap<String, StageRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StageRecord {
    pub kind: String,
    pub params: Value,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Digest>,
    pub seconds: f64,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Numbers from the stage's `results.json`: each set's metrics as `<set>:<field>`, and each
    /// numeric field of its rows (the mean, where there are several rows).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

/// What was asked of `run`.
pub struct Invocation<'a> {
    pub manifest: &'a Path,
    pub overlays: &'a [PathBuf],
    pub sets: &'a [String],
    pub only: &'a [String],
    pub force: &'a [String],
}

fn runs_dir(cache: &Path) -> PathBuf {
    cache.join("runs")
}

/// Records a finished run and returns its id.
pub fn record(
    cache: &Cache,
    asked: &Invocation,
    plan: &Plan,
    outcomes: &[Outcome],
    started: SystemTime,
    exit: Exit,
) -> Result<String> {
    let stamp = humantime::format_rfc3339_millis(started).to_string();
    let nanos = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let salt = blake3::hash(format!("{nanos} {}", std::process::id()).as_bytes()).to_hex();
    let id = format!("{}-{}", stamp.replace(['-', ':'], ""), &salt[..4]);
    let by_name: BTreeMap<&str, &secvec_engine::plan::Node> = plan.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut stages = BTreeMap::new();
    for o in outcomes {
        let Some(node) = by_name.get(o.stage.as_str()) else {
            continue;
        };
        let metrics = o
            .output
            .map(|d| metrics_of(&cache.artifact_path(&d)))
            .unwrap_or_default();
        stages.insert(
            o.stage.clone(),
            StageRecord {
                kind: node.kind.kind().to_string(),
                params: node.params.clone(),
                labels: node.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                status: o.status.clone(),
                key: o.key.clone(),
                output: o.output,
                seconds: o.seconds,
                error: o.error.clone(),
                metrics,
            },
        );
    }
    let record = RunRecord {
        id: id.clone(),
        started: stamp,
        seconds: started.elapsed().map(|d| d.as_secs_f64()).unwrap_or_default(),
        manifest: asked.manifest.to_path_buf(),
        name: plan.manifest_name.clone(),
        overlays: asked.overlays.to_vec(),
        sets: asked.sets.to_vec(),
        only: asked.only.to_vec(),
        force: asked.force.to_vec(),
        exit,
        stages,
    };
    let dir = runs_dir(cache.root());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let part = dir.join(format!(".{id}.part"));
    std::fs::write(&part, serde_json::to_vec_pretty(&record)?)
        .with_context(|| format!("writing {}", part.display()))?;
    std::fs::rename(&part, dir.join(format!("{id}.json"))).with_context(|| format!("committing run record {id}"))?;
    Ok(id)
}

/// The numbers of an output's `results.json`; none where it has none or it does not parse.
pub(crate) fn metrics_of(dir: &Path) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(results) = Results::read(dir) else {
        return out;
    };
    for set in &results.sets {
        let name = set.get("set").and_then(Value::as_str).unwrap_or("all");
        for (k, v) in numbers(set) {
            out.insert(format!("{name}:{k}"), v);
        }
    }
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for row in &results.rows {
        // A mean of the rows' interval bounds is no interval of the mean: rows give values only.
        for (k, v) in numbers(row).filter(|(k, _)| bound_of(k).is_none_or(|m| !row.contains_key(m))) {
            let e = sums.entry(k).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    out.extend(sums.into_iter().map(|(k, (sum, n))| (k, sum / n as f64)));
    out
}

/// The metric a field bounds (`sec-pass@1` for `sec-pass@1_lo`), if it is a bound.
fn bound_of(field: &str) -> Option<&str> {
    field.strip_suffix("_lo").or_else(|| field.strip_suffix("_hi"))
}

fn numbers(row: &Map<String, Value>) -> impl Iterator<Item = (String, f64)> + '_ {
    row.iter().filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
}

/// Every record, oldest first. A record that does not parse is named, not skipped silently.
pub fn list(cache: &Path) -> Result<Vec<RunRecord>> {
    let dir = runs_dir(cache);
    let mut records = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(records);
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            records.push(
                serde_json::from_str::<RunRecord>(&text)
                    .with_context(|| format!("{} is not a run record", path.display()))?,
            );
        }
    }
    records.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(records)
}

/// The record `which` names: an id or a unique prefix of one, a unique prefix of the id's
/// short tag after its timestamp (`9a10` in `20261208T021530.519Z-9a10`), `latest`, or
/// `latest~N` (N runs before the latest).
pub fn find(records: &[RunRecord], which: &str) -> Result<usize> {
    if records.is_empty() {
        bail!("no runs recorded yet; `secvec run` records each run");
    }
    if let Some(back) = which.strip_prefix("latest") {
        let n: usize = match back.strip_prefix('~') {
            None if back.is_empty() => 0,
            Some(n) => n
                .parse()
                .with_context(|| format!("`{which}`: after `latest~` comes a number"))?,
            None => bail!("`{which}`: say `latest` or `latest~N`"),
        };
        return records
            .len()
            .checked_sub(n + 1)
            .with_context(|| format!("`{which}`: only {} runs are recorded", records.len()));
    }
    let hits: Vec<usize> = (0..records.len())
        .filter(|&i| {
            let id = &records[i].id;
            id.starts_with(which) || id.rsplit_once('-').is_some_and(|(_, tag)| tag.starts_with(which))
        })
        .collect();
    match hits.as_slice() {
        [i] => Ok(*i),
        [] => bail!("no run `{which}`; `secvec runs` lists them"),
        many => bail!(
            "`{which}` names {} runs ({}); give more of the id",
            many.len(),
            many.iter()
                .map(|&i| records[i].id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Deletes every run record; returns how many there were.
pub fn forget_all(cache: &Path) -> Result<usize> {
    let n = list(cache)?.len();
    let dir = runs_dir(cache);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(n)
}

/// One difference between two runs.
#[derive(Debug, PartialEq, Serialize)]
pub struct Change {
    /// `run.overlays`, `<stage>.params.<path>`, `<stage>` (present in one run only) or
    /// `<stage>.metrics.<name>`.
    pub what: String,
    pub a: Value,
    pub b: Value,
}

/// Params that differ (in the invocation and in every stage both runs have, and the stages
/// only one has), then the metrics that moved.
pub fn diff(a: &RunRecord, b: &RunRecord) -> (Vec<Change>, Vec<Change>) {
    let mut params = Vec::new();
    let top = |name: &str, x: Value, y: Value, out: &mut Vec<Change>| {
        if x != y {
            out.push(Change {
                what: format!("run.{name}"),
                a: x,
                b: y,
            });
        }
    };
    top(
        "manifest",
        Value::from(a.manifest.display().to_string()),
        Value::from(b.manifest.display().to_string()),
        &mut params,
    );
    top(
        "overlays",
        serde_json::json!(a.overlays),
        serde_json::json!(b.overlays),
        &mut params,
    );
    top(
        "sets",
        serde_json::json!(a.sets),
        serde_json::json!(b.sets),
        &mut params,
    );
    let mut metrics = Vec::new();
    let names: std::collections::BTreeSet<&String> = a.stages.keys().chain(b.stages.keys()).collect();
    for name in names {
        match (a.stages.get(name), b.stages.get(name)) {
            (Some(x), Some(y)) => {
                let (fx, fy) = (flatten(&x.params), flatten(&y.params));
                let paths: std::collections::BTreeSet<&String> = fx.keys().chain(fy.keys()).collect();
                for p in paths {
                    let (vx, vy) = (
                        fx.get(p).cloned().unwrap_or(Value::Null),
                        fy.get(p).cloned().unwrap_or(Value::Null),
                    );
                    if vx != vy {
                        params.push(Change {
                            what: format!("{name}.params.{p}"),
                            a: vx,
                            b: vy,
                        });
                    }
                }
                let keys: std::collections::BTreeSet<&String> = x.metrics.keys().chain(y.metrics.keys()).collect();
                for k in keys {
                    let (mx, my) = (x.metrics.get(k), y.metrics.get(k));
                    if mx != my {
                        metrics.push(Change {
                            what: format!("{name}.metrics.{k}"),
                            a: mx.map_or(Value::Null, |v| Value::from(*v)),
                            b: my.map_or(Value::Null, |v| Value::from(*v)),
                        });
                    }
                }
            }
            (x, y) => params.push(Change {
                what: name.clone(),
                a: Value::from(if x.is_some() { "present" } else { "absent" }),
                b: Value::from(if y.is_some() { "present" } else { "absent" }),
            }),
        }
    }
    (params, metrics)
}

/// A JSON value as `path -> leaf`, with objects' keys joined by `.` and lists kept whole.
pub(crate) fn flatten(v: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, x, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out
}

/// `compare`'s table: one row per (run, stage) whose stage matches `stages`, with the chosen
/// metrics (every metric the matched stages share, when none is chosen), each followed by its
/// interval's bounds (`<metric>_lo`, `<metric>_hi`) where a matched stage has them.
pub fn compare(
    records: &[&RunRecord],
    stages: &globset::GlobMatcher,
    chosen: &[String],
) -> (Vec<String>, Vec<Vec<Value>>) {
    let matched: Vec<(&RunRecord, &String, &StageRecord)> = records
        .iter()
        .flat_map(|r| r.stages.iter().map(move |(n, s)| (*r, n, s)))
        .filter(|(_, n, s)| stages.is_match(n.as_str()) && !s.metrics.is_empty())
        .collect();
    let metrics: Vec<String> = if chosen.is_empty() {
        let mut shared: Option<std::collections::BTreeSet<&String>> = None;
        for (_, _, s) in &matched {
            let here: std::collections::BTreeSet<&String> = s.metrics.keys().collect();
            shared = Some(match shared {
                None => here,
                Some(prev) => prev.intersection(&here).copied().collect(),
            });
        }
        let shared = shared.unwrap_or_default();
        shared
            .iter()
            .filter(|m| bound_of(m).is_none_or(|of| !shared.contains(&of.to_string())))
            .map(|m| m.to_string())
            .collect()
    } else {
        chosen.to_vec()
    };
    let columns: Vec<String> = metrics
        .iter()
        .flat_map(|m| {
            let bounds = [format!("{m}_lo"), format!("{m}_hi")];
            let has = matched
                .iter()
                .any(|(_, _, s)| bounds.iter().all(|b| s.metrics.contains_key(b)));
            std::iter::once(m.clone()).chain(has.then_some(bounds).into_iter().flatten())
        })
        .collect();
    let mut header = vec!["run".to_string(), "stage".to_string()];
    header.extend(columns.iter().cloned());
    let rows = matched
        .iter()
        .map(|(r, n, s)| {
            let mut row = vec![Value::from(r.id.clone()), Value::from(n.as_str())];
            row.extend(
                columns
                    .iter()
                    .map(|m| s.metrics.get(m).map_or(Value::Null, |v| Value::from(*v))),
            );
            row
        })
        .collect();
    (header, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str, theta: f64, pass: f64) -> RunRecord {
        serde_json::from_value(json!({
            "id": id, "started": "", "seconds": 1.0, "manifest": "m.yaml", "name": "m", "overlays": [], "sets": [],
            "exit": "ok",
            "stages": {
                "steer": {"kind": "merge", "params": {"operator": "negation", "theta": theta, "alpha": 1.0}, "status": "ran", "seconds": 1.0},
                "scores": {"kind": "score", "params": {"k": [1]}, "status": "ran", "seconds": 1.0,
                           "metrics": {"main:pass@1": pass, "n": 4.0}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn diff_lists_every_param_that_differs_and_the_metrics_that_moved() {
        let (a, mut b) = (record("1", 0.5, 0.25), record("2", 1.5, 0.5));
        if let Some(s) = b.stages.get_mut("steer") {
            s.params["operator"] = json!("contrast");
        }
        b.sets = vec!["stages.steer.params.theta=1.5".into()];
        let (params, metrics) = diff(&a, &b);
        let whats: Vec<&str> = params.iter().map(|c| c.what.as_str()).collect();
        assert_eq!(whats, vec!["run.sets", "steer.params.operator", "steer.params.theta"]);
        assert_eq!(
            metrics,
            vec![Change {
                what: "scores.metrics.main:pass@1".into(),
                a: json!(0.25),
                b: json!(0.5)
            }]
        );
    }

    #[test]
    fn compare_puts_each_metrics_interval_beside_it() {
        let mut a = record("1", 0.5, 0.25);
        if let Some(s) = a.stages.get_mut("scores") {
            s.metrics.insert("main:pass@1_lo".into(), 0.1);
            s.metrics.insert("main:pass@1_hi".into(), 0.4);
        }
        let all = globset::Glob::new("*").unwrap().compile_matcher();
        let (header, rows) = compare(&[&a], &all, &[]);
        assert_eq!(
            header,
            ["run", "stage", "main:pass@1", "main:pass@1_lo", "main:pass@1_hi", "n"]
        );
        assert_eq!(
            rows,
            vec![vec![
                json!("1"),
                json!("scores"),
                json!(0.25),
                json!(0.1),
                json!(0.4),
                json!(4.0)
            ]]
        );
        let (header, _) = compare(&[&a], &all, &["n".to_string()]);
        assert_eq!(header, ["run", "stage", "n"]);
    }

    #[test]
    fn row_means_leave_out_the_rows_interval_bounds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("results.json"),
            r#"{"rows": [{"margin": 0.1, "margin_lo": 0.0, "margin_hi": 0.2, "pairs_hi": 3}, {"margin": 0.3, "margin_lo": 0.2, "margin_hi": 0.4, "pairs_hi": 5}],
                "sets": [{"set": "val", "margin": 0.2, "margin_lo": 0.1, "margin_hi": 0.3}]}"#,
        )
        .unwrap();
        let m = metrics_of(dir.path());
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["margin", "pairs_hi", "val:margin", "val:margin_hi", "val:margin_lo"]
        );
        assert!((m["margin"] - 0.2).abs() < 1e-12);
    }

    #[test]
    fn runs_are_named_by_prefix_or_from_the_latest() {
        let records = vec![
            record("20261201T1-7f3c", 0.5, 0.1),
            record("20261202T1-44f0", 0.5, 0.1),
            record("20261202T2-44a1", 0.5, 0.1),
        ];
        assert_eq!(find(&records, "latest").unwrap(), 2);
        assert_eq!(find(&records, "latest~2").unwrap(), 0);
        assert_eq!(find(&records, "20261201").unwrap(), 0);
        // The short tag `runs` prints at each id's end, or its start.
        assert_eq!(find(&records, "7f3c").unwrap(), 0);
        assert_eq!(find(&records, "44f").unwrap(), 1);
        assert!(find(&records, "44").unwrap_err().to_string().contains("names 2 runs"));
        assert!(find(&records, "20261202")
            .unwrap_err()
            .to_string()
            .contains("names 2 runs"));
        assert!(find(&records, "latest~3")
            .unwrap_err()
            .to_string()
            .contains("only 3 runs"));
        assert!(find(&records, "nope")
            .unwrap_err()
            .to_string()
            .contains("no run `nope`"));
    }
}
