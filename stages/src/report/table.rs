use std::collections::BTreeMap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ReportError;

/// One table: rows grouped by key fields, value fields as columns.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub title: String,
    /// Keep only rows whose fields equal these values.
    #[serde(default)]
    pub filter: BTreeMap<String, Value>,
    /// Fields that identify a table row; rows sharing them are aggregated.
    pub rows: Vec<String>,
    /// Value fields shown as columns.
    pub columns: Vec<String>,
    #[serde(default)]
    pub aggregate: Aggregate,
    /// Spread every column over the values of this field (e.g. `theta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pivot: Option<String>,
    /// A CSV in the `references` input with the same key fields and some of the column headers;
    /// its values are shown beside the measured ones as `<column> (ref)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default = "default_decimals")]
    pub decimals: usize,
    /// Append a row aggregating every row of the table.
    #[serde(default)]
    pub total: bool,
    /// Which rows of the results: each stage's `rows`, or `sets` (`score`'s metrics averaged over
    /// each set of scenarios, e.g. main and unseen CWEs).
    #[serde(default)]
    pub from: From,
    /// Show each value as its change relative to a baseline, `(value / baseline - 1) x 100` in %,
    /// as Table IV shows steering against each strategy's W_sec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_to: Option<Baseline>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum From {
    #[default]
    Rows,
    Sets,
}

/// The baseline of a relative table: the mean of the rows matching `filter` that agree with the
/// cell on the `match` fields (each one of the table's `rows` fields or its `pivot`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub filter: BTreeMap<String, Value>,
    #[serde(default, rename = "match")]
    pub matching: Vec<String>,
}

fn default_decimals() -> usize {
    2
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    #[default]
    Mean,
    Sum,
    /// The best of the rows sharing a key, e.g. over the steering strengths.
    Max,
    Min,
}

/// A rendered table: a header and string cells.
#[derive(Debug, Serialize)]
pub struct Rendered {
    pub header: Vec<String>,
    pub cells: Vec<Vec<String>>,
}

const MISSING: &str = "—";

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => MISSING.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Sums of whole numbers print as integers (counts); everything else with fixed decimals.
fn fmt_num(x: f64, decimals: usize, how: Aggregate) -> String {
    if how == Aggregate::Sum && x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.decimals$}")
    }
}

fn aggregate(values: &[f64], how: Aggregate) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let sum: f64 = values.iter().sum();
    Some(match how {
        Aggregate::Sum => sum,
        Aggregate::Mean => sum / values.len() as f64,
        Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
    })
}

pub fn render(
    spec: &TableSpec,
    rows: &[Map<String, Value>],
    reference: Option<(&str, &str)>,
) -> Result<Rendered, ReportError> {
    // Rows from several upstream kinds share one pool: a row holding none of this table's
    // columns belongs to another table.
    let matches = |r: &Map<String, Value>, filter: &BTreeMap<String, Value>| {
        filter.iter().all(|(k, v)| text(r.get(k)) == text(Some(v)))
    };
    let kept: Vec<&Map<String, Value>> = rows
        .iter()
        .filter(|r| matches(r, &spec.filter))
        .filter(|r| spec.columns.iter().any(|c| r.contains_key(c)))
        .collect();
    if let Some(b) = &spec.relative_to {
        if spec.total {
            return Err(ReportError::Spec {
                table: spec.title.clone(),
                what: "`total` and `relative_to` do not combine: a total of relative changes means nothing".into(),
            });
        }
        if let Some(m) = b
            .matching
            .iter()
            .find(|m| !spec.rows.contains(m) && spec.pivot.as_ref() != Some(m))
        {
            return Err(ReportError::Spec {
                table: spec.title.clone(),
                what: format!("`relative_to.match` field `{m}` must be one of the table's `rows` or its `pivot`"),
            });
        }
    }
    // The baseline of a cell: the mean of the baseline rows that agree on the `match` fields.
    let baseline = |key: &[String], pivot: Option<&String>, field: &str| -> Option<f64> {
        let b = spec.relative_to.as_ref()?;
        let want: Vec<(&String, String)> = b
            .matching
            .iter()
            .map(|m| match spec.rows.iter().position(|r| r == m) {
                Some(i) => (m, key[i].clone()),
                None => (m, pivot.cloned().unwrap_or_default()),
            })
            .collect();
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| matches(r, &b.filter) && want.iter().all(|(m, v)| &text(r.get(*m)) == v))
            .filter_map(|r| r.get(field).and_then(Value::as_f64))
            .collect();
        aggregate(&values, Aggregate::Mean)
    };
    let pivots: Vec<Option<String>> = match &spec.pivot {
        None => vec![None],
        Some(p) => {
            let mut seen: Vec<String> = Vec::new();
            for r in &kept {
                let v = text(r.get(p));
                if !seen.contains(&v) {
                    seen.push(v);
                }
            }
            seen.into_iter().map(Some).collect()
        }
    };
    let value_headers: Vec<(String, &str, Option<String>)> = spec
        .columns
        .iter()
        .flat_map(|c| {
            pivots.iter().map(move |pv| match (pv, &spec.pivot) {
                (Some(v), Some(p)) => (format!("{c} {p}={v}"), c.as_str(), Some(v.clone())),
                _ => (c.clone(), c.as_str(), None),
            })
        })
        .collect();
    // Values per row key and value header, in first-seen order of keys.
    let mut groups: IndexMap<Vec<String>, Vec<Vec<f64>>> = IndexMap::new();
    let mut labels: IndexMap<Vec<String>, Vec<Option<String>>> = IndexMap::new();
    for r in &kept {
        let key: Vec<String> = spec.rows.iter().map(|k| text(r.get(k))).collect();
        let slots = groups
            .entry(key.clone())
            .or_insert_with(|| vec![Vec::new(); value_headers.len()]);
        let texts = labels.entry(key).or_insert_with(|| vec![None; value_headers.len()]);
        for (j, (_, field, pv)) in value_headers.iter().enumerate() {
            if let (Some(pv), Some(p)) = (pv, &spec.pivot) {
                if &text(r.get(p)) != pv {
                    continue;
                }
            }
            match r.get(*field) {
                Some(Value::Number(n)) => slots[j].push(n.as_f64().unwrap_or(f64::NAN)),
                Some(Value::Bool(b)) => slots[j].push(f64::from(u8::from(*b))),
                Some(other) => texts[j] = Some(text(Some(other))),
                None => {}
            }
        }
    }
    let reference = reference
        .map(|(name, csv)| read_reference(name, csv, &spec.rows))
        .transpose()?;
    let ref_cols: Vec<bool> = value_headers
        .iter()
        .map(|(h, _, _)| reference.as_ref().map(|r| r.columns.contains(h)).unwrap_or(false))
        .collect();
    let mut header: Vec<String> = spec.rows.clone();
    for (j, (h, _, _)) in value_headers.iter().enumerate() {
        header.push(h.clone());
        if ref_cols[j] {
            header.push(format!("{h} (ref)"));
        }
    }
    let total_key: Option<Vec<String>> = (spec.total && !spec.rows.is_empty()).then(|| {
        let mut k = vec![String::new(); spec.rows.len()];
        k[0] = match spec.aggregate {
            Aggregate::Sum => "total".into(),
            Aggregate::Mean => "mean".into(),
            Aggregate::Max => "max".into(),
            Aggregate::Min => "min".into(),
        };
        k
    });
    let reference_cell = |key: &Vec<String>, h: &String| {
        let r = reference
            .as_ref()
            .and_then(|r| r.values.get(key))
            .and_then(|m| m.get(h))
            .cloned();
        r.filter(|v| !v.is_empty()).unwrap_or_else(|| MISSING.to_string())
    };
    let mut keys: Vec<Vec<String>> = groups.keys().cloned().collect();
    if let Some(r) = &reference {
        keys.extend(
            r.values
                .keys()
                .filter(|k| !groups.contains_key(*k) && Some(*k) != total_key.as_ref())
                .cloned(),
        );
    }
    let mut cells = Vec::new();
    for key in &keys {
        let mut row = key.clone();
        for (j, (h, field, pv)) in value_headers.iter().enumerate() {
            let measured = groups
                .get(key)
                .and_then(|g| aggregate(&g[j], spec.aggregate))
                .and_then(|x| match &spec.relative_to {
                    None => Some(fmt_num(x, spec.decimals, spec.aggregate)),
                    Some(_) => baseline(key, pv.as_ref(), field)
                        .filter(|b| *b != 0.0)
                        .map(|b| format!("{:+.*}%", spec.decimals, (x / b - 1.0) * 100.0)),
                })
                .or_else(|| labels.get(key).and_then(|t| t[j].clone()))
                .unwrap_or_else(|| MISSING.to_string());
            row.push(measured);
            if ref_cols[j] {
                row.push(reference_cell(key, h));
            }
        }
        cells.push(row);
    }
    if let Some(key) = total_key {
        let mut row = key.clone();
        for (j, (h, _, _)) in value_headers.iter().enumerate() {
            let per_row: Vec<f64> = groups
                .values()
                .filter_map(|g| aggregate(&g[j], spec.aggregate))
                .collect();
            row.push(
                aggregate(&per_row, spec.aggregate)
                    .map(|x| fmt_num(x, spec.decimals, spec.aggregate))
                    .unwrap_or_else(|| MISSING.into()),
            );
            if ref_cols[j] {
                row.push(reference_cell(&key, h));
            }
        }
        cells.push(row);
    }
    Ok(Rendered { header, cells })
}

struct Reference {
    columns: Vec<String>,
    values: IndexMap<Vec<String>, BTreeMap<String, String>>,
}

fn read_reference(name: &str, csv_text: &str, keys: &[String]) -> Result<Reference, ReportError> {
    let err = |what: String| ReportError::Reference {
        file: name.to_string(),
        what,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| err(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let key_idx: Vec<usize> = keys
        .iter()
        .map(|k| {
            header
                .iter()
                .position(|h| h == k)
                .ok_or_else(|| err(format!("no column `{k}` (the table's row fields are {keys:?})")))
        })
        .collect::<Result<_, _>>()?;
    let mut values = IndexMap::new();
    for (n, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| err(format!("line {}: {e}", n + 2)))?;
        let key: Vec<String> = key_idx
            .iter()
            .map(|&i| rec.get(i).unwrap_or_default().to_string())
            .collect();
        let row: BTreeMap<String, String> = header
            .iter()
            .enumerate()
            .filter(|(i, _)| !key_idx.contains(i))
            .map(|(i, h)| (h.clone(), rec.get(i).unwrap_or_default().to_string()))
            .collect();
        values.insert(key, row);
    }
    let columns = header
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !key_idx.contains(i))
        .map(|(_, h)| h)
        .collect();
    Ok(Reference { columns, values })
}

impl Rendered {
    pub fn markdown(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.cells {
            for (j, c) in row.iter().enumerate().take(n) {
                widths[j] = widths[j].max(c.chars().count()).max(3);
            }
        }
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(j, c)| format!("{c}{}", " ".repeat(widths[j] - c.chars().count())))
                .collect();
            format!("| {} |\n", parts.join(" | "))
        };
        let mut out = line(&self.header);
        out.push_str(&format!(
            "|{}|\n",
            widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|")
        ));
        for row in &self.cells {
            out.push_str(&line(row));
        }
        out
    }

    pub fn csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.header)?;
        for row in &self.cells {
            w.write_record(row)?;
        }
        w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(v: Value) -> Vec<Map<String, Value>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect()
    }

    fn spec(v: Value) -> TableSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn groups_pivots_and_places_reference_beside_measured() {
        let data = rows(json!([
            {"operator": "negation", "theta": 0.5, "pass@1": 0.6, "sec": 0.7},
            {"operator": "negation", "theta": 1.0, "pass@1": 0.5, "sec": 0.9},
            {"operator": "contrast", "theta": 0.5, "pass@1": 0.55, "sec": 0.8},
            {"operator": "contrast", "theta": 0.5, "pass@1": 0.65, "sec": 0.6}
        ]));
        let t = spec(
            json!({"title": "t", "rows": ["operator"], "columns": ["pass@1"], "pivot": "theta", "reference": "r.csv"}),
        );
        let reference = "operator,pass@1 theta=0.5\nnegation,0.61\nsecure-anchored,0.7\n";
        let r = render(&t, &data, Some(("r.csv", reference))).unwrap();
        insta::assert_snapshot!(r.markdown(), @r"
        | operator        | pass@1 theta=0.5 | pass@1 theta=0.5 (ref) | pass@1 theta=1.0 |
        |-----------------|------------------|------------------------|------------------|
        | negation        | 0.60             | 0.61                   | 0.50             |
        | contrast        | 0.60             | —                      | —                |
        | secure-anchored | —                | 0.7                    | —                |
        ");
    }

    #[test]
    fn sums_filter_and_total() {
        let data = rows(json!([
            {"split": "train", "language": "python", "pairs": 3},
            {"split": "train", "language": "c", "pairs": 2},
            {"split": "train", "language": "python", "pairs": 1},
            {"split": "val", "language": "c", "pairs": 5}
        ]));
        let t = spec(
            json!({"title": "t", "rows": ["language"], "columns": ["pairs"], "aggregate": "sum",
                            "filter": {"split": "train"}, "total": true}),
        );
        let r = render(&t, &data, None).unwrap();
        assert_eq!(r.cells, vec![vec!["python", "4"], vec!["c", "2"], vec!["total", "6"]]);
        assert_eq!(
            String::from_utf8(r.csv().unwrap()).unwrap(),
            "language,pairs\npython,4\nc,2\ntotal,6\n"
        );
    }

    #[test]
    fn best_over_theta_relative_to_each_strategys_baseline() {
        let data = rows(json!([
            {"model": "W_sec", "strategy": "LPO", "sec": 0.5},
            {"model": "W_sec", "strategy": "SFT", "sec": 0.4},
            {"model": "W_steered", "strategy": "LPO", "operator": "negation", "theta": 0.5, "sec": 0.55},
            {"model": "W_steered", "strategy": "LPO", "operator": "negation", "theta": 1.5, "sec": 0.6},
            {"model": "W_steered", "strategy": "SFT", "operator": "negation", "theta": 0.5, "sec": 0.3},
            {"model": "W_steered", "strategy": "SFT", "operator": "negation", "theta": 1.5, "sec": 0.2}
        ]));
        let t = spec(
            json!({"title": "t", "filter": {"model": "W_steered"}, "rows": ["operator"], "columns": ["sec"],
                            "pivot": "strategy", "aggregate": "max", "decimals": 1,
                            "relative_to": {"filter": {"model": "W_sec"}, "match": ["strategy"]}}),
        );
        let r = render(&t, &data, None).unwrap();
        assert_eq!(r.cells, vec![vec!["negation", "+20.0%", "-25.0%"]], "{:?}", r.header);

        let bad = spec(json!({"title": "t", "rows": ["operator"], "columns": ["sec"],
                              "relative_to": {"filter": {"model": "W_sec"}, "match": ["theta"]}}));
        let err = render(&bad, &data, None).unwrap_err().to_string();
        assert!(
            err.contains("`theta` must be one of the table's `rows` or its `pivot`"),
            "{err}"
        );
    }

    #[test]
    fn reference_without_key_column_is_an_error() {
        let t = spec(json!({"title": "t", "rows": ["cwe"], "columns": ["n"], "reference": "r.csv"}));
        let err = render(&t, &[], Some(("r.csv", "language,n\nc,1\n"))).unwrap_err();
        assert!(err.to_string().contains("no column `cwe`"), "{err}");
    }
}
