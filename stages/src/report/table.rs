use std::collections::BTreeMap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::rows::{interval, matches, text, From, MISSING};
use super::ReportError;

/// One table: rows grouped by key fields, value fields as columns.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub title: String,
    /// Keep only rows whose fields equal these values (a list: any of them), e.g.
    /// `{set: [main, unseen]}` keeps validation scenarios out.
    #[serde(default)]
    pub filter: BTreeMap<String, Value>,
    /// Leave out the rows whose fields equal these values (a list: any of them), e.g.
    /// `{theta: 0}`: Table IV's best θ must not count θ = 0, which is the baseline itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exclude: BTreeMap<String, Value>,
    /// Mark with `*` each value whose interval excludes 0: a difference (see the `difference`
    /// kind) the data support at the interval's confidence.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mark_nonzero: bool,
    /// Fields that identify a table row; rows sharing them are aggregated. `stage` names the
    /// upstream stage a row came from.
    pub rows: Vec<String>,
    /// Value fields shown as columns.
    pub columns: Vec<String>,
    /// How rows sharing a key (and the total) combine: one way for every column, or one per
    /// column (`{n: sum, functional: sum}`; columns not named are averaged).
    #[serde(default)]
    pub aggregate: AggregateSpec,
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
    /// Instead of one total, one per value of this field (one of `rows`), e.g. `set`: each set
    /// of scenarios gets its own mean, as the papers report main and unseen CWEs apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_by: Option<String>,
    /// Order of the rows: header names, `-` first for descending, e.g. `[-sec-pass@1, operator]`.
    /// Without it, rows keep the order they were first seen in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sort: Vec<String>,
    /// Which rows of the results: each stage's `rows`, or `sets` (`score`'s metrics averaged over
    /// each set of scenarios, e.g. main and unseen CWEs).
    #[serde(default)]
    pub from: From,
    /// Show each value as its change relative to a baseline, `(value / baseline - 1) x 100` in %,
    /// as Table IV shows steering against each strategy's W_sec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_to: Option<Baseline>,
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

impl Aggregate {
    fn word(self) -> &'static str {
        match self {
            Aggregate::Sum => "total",
            Aggregate::Mean => "mean",
            Aggregate::Max => "max",
            Aggregate::Min => "min",
        }
    }
}

/// One aggregate for every column, or one per column.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum AggregateSpec {
    All(Aggregate),
    PerColumn(BTreeMap<String, Aggregate>),
}

impl Default for AggregateSpec {
    fn default() -> Self {
        AggregateSpec::All(Aggregate::Mean)
    }
}

impl AggregateSpec {
    fn of(&self, column: &str) -> Aggregate {
        match self {
            AggregateSpec::All(a) => *a,
            AggregateSpec::PerColumn(m) => m.get(column).copied().unwrap_or_default(),
        }
    }

    /// What a total row is called: the one aggregate, or `total` where columns differ.
    fn word(&self) -> &'static str {
        match self {
            AggregateSpec::All(a) => a.word(),
            AggregateSpec::PerColumn(_) => "total",
        }
    }
}

/// A rendered table: a header, the cells as shown, and the same cells as values (numbers
/// unrounded, `null` where missing) for `report.json`.
#[derive(Debug, Serialize)]
pub struct Rendered {
    pub header: Vec<String>,
    pub cells: Vec<Vec<String>>,
    pub values: Vec<Vec<Value>>,
}

/// Whole numbers print as integers where they count something (a sum, or a column whose values
/// are all integers and whose cells all come out whole); everything else with fixed decimals.
fn fmt_num(x: f64, decimals: usize, counts: bool) -> String {
    if counts && x.fract() == 0.0 && x.abs() < 1e15 {
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

fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A cell shown as text and kept as a value.
#[derive(Clone)]
struct Cell {
    shown: String,
    value: Value,
}

impl Cell {
    fn missing() -> Cell {
        Cell {
            shown: MISSING.to_string(),
            value: Value::Null,
        }
    }
    fn text(s: String) -> Cell {
        Cell {
            value: Value::String(s.clone()),
            shown: s,
        }
    }
    /// A key field or a reference value as text: a number where it reads as one.
    fn typed(s: String) -> Cell {
        if s.is_empty() || s == MISSING {
            return Cell::missing();
        }
        match s.parse::<f64>() {
            Ok(x) if x.is_finite() => Cell {
                shown: s,
                value: number(x),
            },
            _ => Cell::text(s),
        }
    }
}

pub fn render(
    spec: &TableSpec,
    rows: &[Map<String, Value>],
    reference: Option<(&str, &str)>,
) -> Result<Rendered, ReportError> {
    let spec_err = |what: String| ReportError::Spec {
        table: spec.title.clone(),
        what,
    };
    // Rows from several upstream kinds share one pool: a row holding none of this table's
    // columns belongs to another table.
    let kept: Vec<&Map<String, Value>> = rows
        .iter()
        .filter(|r| matches(r, &spec.filter) && (spec.exclude.is_empty() || !matches(r, &spec.exclude)))
        .filter(|r| spec.columns.iter().any(|c| r.contains_key(c)))
        .collect();
    let totals = spec.total || spec.total_by.is_some();
    if let Some(b) = &spec.relative_to {
        if totals {
            return Err(spec_err(
                "`total` and `relative_to` do not combine: a total of relative changes means nothing".into(),
            ));
        }
        if let Some(m) = b
            .matching
            .iter()
            .find(|m| !spec.rows.contains(m) && spec.pivot.as_ref() != Some(m))
        {
            return Err(spec_err(format!(
                "`relative_to.match` field `{m}` must be one of the table's `rows` or its `pivot`"
            )));
        }
    }
    let total_by = match &spec.total_by {
        None => None,
        Some(f) => Some(spec.rows.iter().position(|r| r == f).ok_or_else(|| {
            spec_err(format!(
                "`total_by` field `{f}` must be one of the table's `rows` {:?}",
                spec.rows
            ))
        })?),
    };
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
    // Values per row key and value header, in first-seen order of keys, each with its row's
    // interval where the row has one (`<field>_lo`, `<field>_hi`, as `score` writes them).
    let mut groups: IndexMap<Vec<String>, Vec<Vec<f64>>> = IndexMap::new();
    let mut intervals: IndexMap<Vec<String>, Vec<Vec<Option<(f64, f64)>>>> = IndexMap::new();
    let mut labels: IndexMap<Vec<String>, Vec<Option<String>>> = IndexMap::new();
    // Whether each column holds only integers (JSON integers or flags), as counts do.
    let mut integral = vec![true; value_headers.len()];
    for r in &kept {
        let key: Vec<String> = spec.rows.iter().map(|k| text(r.get(k))).collect();
        let slots = groups
            .entry(key.clone())
            .or_insert_with(|| vec![Vec::new(); value_headers.len()]);
        let bounds = intervals
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
                Some(Value::Number(n)) => {
                    integral[j] &= n.is_i64() || n.is_u64();
                    slots[j].push(n.as_f64().unwrap_or(f64::NAN));
                    bounds[j].push(interval(r, field));
                }
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
    // Total rows: one for the whole table, or one per value of `total_by`, each keyed by the
    // aggregate's name in the first column (and the group's value in its own).
    let mut total_keys: Vec<(Vec<String>, Option<String>)> = Vec::new();
    if totals && !spec.rows.is_empty() {
        let blank = |group: Option<&String>| {
            let mut k = vec![String::new(); spec.rows.len()];
            k[0] = spec.aggregate.word().to_string();
            if let (Some(i), Some(g)) = (total_by, group) {
                if i == 0 {
                    k[0] = format!("{} ({g})", k[0]);
                } else {
                    k[i] = g.clone();
                }
            }
            k
        };
        match total_by {
            None => total_keys.push((blank(None), None)),
            Some(i) => {
                let mut seen: Vec<String> = Vec::new();
                for key in groups.keys() {
                    if !seen.contains(&key[i]) {
                        seen.push(key[i].clone());
                    }
                }
                total_keys.extend(seen.into_iter().map(|g| (blank(Some(&g)), Some(g))));
            }
        }
    }
    let reference_cell = |key: &Vec<String>, h: &String| {
        reference
            .as_ref()
            .and_then(|r| r.values.get(key))
            .and_then(|m| m.get(h))
            .cloned()
            .map(Cell::typed)
            .unwrap_or_else(Cell::missing)
    };
    let mut keys: Vec<Vec<String>> = groups.keys().cloned().collect();
    if let Some(r) = &reference {
        keys.extend(
            r.values
                .keys()
                .filter(|k| !groups.contains_key(*k) && !total_keys.iter().any(|(t, _)| t == *k))
                .cloned(),
        );
    }
    // A column of integers prints as integers when every cell comes out whole: counts stay
    // counts, while a mean such as 0.5 keeps the whole column in decimals.
    let counts: Vec<bool> = value_headers
        .iter()
        .enumerate()
        .map(|(j, (_, field, _))| {
            let how = spec.aggregate.of(field);
            how == Aggregate::Sum
                || (integral[j]
                    && groups
                        .values()
                        .filter_map(|g| aggregate(&g[j], how))
                        .all(|x| x.fract() == 0.0))
        })
        .collect();
    let mut table: Vec<Vec<Cell>> = Vec::new();
    for key in &keys {
        let mut row: Vec<Cell> = key.iter().cloned().map(Cell::typed).collect();
        for (j, (h, field, pv)) in value_headers.iter().enumerate() {
            let how = spec.aggregate.of(field);
            let measured = groups.get(key).and_then(|g| aggregate(&g[j], how));
            // A cell of one row shows that row's interval; a mean of rows has none to show.
            let interval = match intervals.get(key).map(|b| b[j].as_slice()) {
                Some([one]) => *one,
                _ => None,
            };
            let cell = match (measured, &spec.relative_to) {
                (Some(x), None) => Some(Cell {
                    shown: match interval {
                        Some((lo, hi)) => format!(
                            "{} [{lo:.d$}, {hi:.d$}]{}",
                            fmt_num(x, spec.decimals, counts[j]),
                            if spec.mark_nonzero && (lo > 0.0 || hi < 0.0) {
                                " *"
                            } else {
                                ""
                            },
                            d = spec.decimals
                        ),
                        None => fmt_num(x, spec.decimals, counts[j]),
                    },
                    value: number(x),
                }),
                (Some(x), Some(_)) => baseline(key, pv.as_ref(), field).filter(|b| *b != 0.0).map(|b| {
                    let change = (x / b - 1.0) * 100.0;
                    Cell {
                        shown: format!("{change:+.*}%", spec.decimals),
                        value: number(change),
                    }
                }),
                (None, _) => None,
            };
            row.push(
                cell.or_else(|| labels.get(key).and_then(|t| t[j].clone()).map(Cell::text))
                    .unwrap_or_else(Cell::missing),
            );
            if ref_cols[j] {
                row.push(reference_cell(key, h));
            }
        }
        table.push(row);
    }
    sort_rows(&mut table, &header, &spec.sort).map_err(spec_err)?;
    for (key, group) in total_keys {
        let mut row: Vec<Cell> = key.iter().cloned().map(Cell::text).collect();
        for (j, (h, field, _)) in value_headers.iter().enumerate() {
            let how = spec.aggregate.of(field);
            let per_row: Vec<f64> = groups
                .iter()
                .filter(|(k, _)| match (total_by, &group) {
                    (Some(i), Some(g)) => &k[i] == g,
                    _ => true,
                })
                .filter_map(|(_, g)| aggregate(&g[j], how))
                .collect();
            row.push(
                aggregate(&per_row, how)
                    .map(|x| Cell {
                        shown: fmt_num(x, spec.decimals, counts[j]),
                        value: number(x),
                    })
                    .unwrap_or_else(Cell::missing),
            );
            if ref_cols[j] {
                row.push(reference_cell(&key, h));
            }
        }
        table.push(row);
    }
    Ok(Rendered {
        header,
        cells: table
            .iter()
            .map(|r| r.iter().map(|c| c.shown.clone()).collect())
            .collect(),
        values: table
            .into_iter()
            .map(|r| r.into_iter().map(|c| c.value).collect())
            .collect(),
    })
}

/// Sorts by the named headers in turn (`-name`: descending): numbers by value, text by text,
/// missing values last either way.
fn sort_rows(table: &mut [Vec<Cell>], header: &[String], by: &[String]) -> Result<(), String> {
    let mut order = Vec::new();
    for s in by {
        let (name, descending) = match s.strip_prefix('-') {
            Some(n) => (n, true),
            None => (s.as_str(), false),
        };
        let i = header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("`sort` names `{name}`, which is not a column; the columns are {header:?}"))?;
        order.push((i, descending));
    }
    table.sort_by(|a, b| {
        for &(i, descending) in &order {
            let (x, y) = (&a[i].value, &b[i].value);
            let o = match (x, y) {
                (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
                (Value::Null, _) => std::cmp::Ordering::Greater,
                (_, Value::Null) => std::cmp::Ordering::Less,
                (Value::Number(p), Value::Number(q)) => {
                    let o = p.as_f64().partial_cmp(&q.as_f64()).unwrap_or(std::cmp::Ordering::Equal);
                    if descending {
                        o.reverse()
                    } else {
                        o
                    }
                }
                _ => {
                    let o = a[i].shown.cmp(&b[i].shown);
                    if descending {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    Ok(())
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
    /// Each row as an object keyed by the header, with typed values.
    pub fn objects(&self) -> Vec<Map<String, Value>> {
        self.values
            .iter()
            .map(|row| self.header.iter().cloned().zip(row.iter().cloned()).collect())
            .collect()
    }

    /// The table in GitHub's Markdown; header and cells come from data, so they are escaped.
    pub fn markdown(&self) -> String {
        let n = self.header.len();
        let header: Vec<String> = self.header.iter().map(|h| markdown_cell(h)).collect();
        let cells: Vec<Vec<String>> = self
            .cells
            .iter()
            .map(|row| row.iter().map(|c| markdown_cell(c)).collect())
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &cells {
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
        let mut out = line(&header);
        out.push_str(&format!(
            "|{}|\n",
            widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|")
        ));
        for row in &cells {
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

/// One Markdown table cell showing `s` as text: a pipe would end the cell, a newline the row,
/// `<`/`&` would open HTML, backticks and brackets code spans and links. A backslash is escaped
/// too, or data ending in one would escape the cell's own delimiter.
fn markdown_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '|' | '`' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::rows::objects as rows;
    use serde_json::json;

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
    fn markdown_shows_data_as_text_and_keeps_the_columns() {
        let data = rows(json!([
            {"scenario": "\"><img src=x onerror=alert(1)>|x", "n": 1},
            {"scenario": "a\\|`b`\n[c](d) & e", "n": 2}
        ]));
        let t = spec(json!({"title": "t", "rows": ["scenario"], "columns": ["n"], "aggregate": "sum"}));
        let md = render(&t, &data, None).unwrap().markdown();
        insta::assert_snapshot!(md, @r#"
        | scenario                                   | n   |
        |--------------------------------------------|-----|
        | "&gt;&lt;img src=x onerror=alert(1)&gt;\|x | 1   |
        | a\\\|\`b\`<br>\[c\](d) &amp; e             | 2   |
        "#);
        for line in md.lines() {
            // Cells split on pipes that no backslash escapes, as GitHub's tables do.
            let (mut delimiters, mut escaped) = (0, false);
            for c in line.chars() {
                delimiters += usize::from(c == '|' && !escaped);
                escaped = c == '\\' && !escaped;
            }
            assert_eq!(delimiters, 3, "{line}");
        }
        assert!(!md.contains("<img"), "{md}");
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

        // θ = 0 is the baseline point: counted, it hides a steering that only hurts (SFT's
        // -25% would read +0%). `exclude` leaves it out, as the paper's Table IV does.
        let mut with_zero = data.clone();
        with_zero.extend(rows(json!([
            {"model": "W_steered", "strategy": "SFT", "operator": "negation", "theta": 0.0, "sec": 0.4},
            {"model": "W_steered", "strategy": "LPO", "operator": "negation", "theta": 0.0, "sec": 0.5}
        ])));
        assert_eq!(
            render(&t, &with_zero, None).unwrap().cells,
            vec![vec!["negation", "+20.0%", "+0.0%"]]
        );
        let mut excluding = t;
        excluding.exclude = serde_json::from_value(json!({"theta": 0})).unwrap();
        assert_eq!(
            render(&excluding, &with_zero, None).unwrap().cells,
            vec![vec!["negation", "+20.0%", "-25.0%"]]
        );

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

    #[test]
    fn a_cell_of_one_row_shows_its_interval_and_a_mean_of_rows_none() {
        let data = rows(json!([
            {"set": "main", "scenario": "a", "pass@1": 0.5, "pass@1_lo": 0.25, "pass@1_hi": 0.75},
            {"set": "main", "scenario": "b", "pass@1": 0.25, "pass@1_lo": 0.0, "pass@1_hi": 0.5},
            {"set": "unseen", "scenario": "c", "pass@1": 1.0}
        ]));
        let t = spec(json!({"title": "t", "rows": ["set", "scenario"], "columns": ["pass@1"], "total": true}));
        let r = render(&t, &data, None).unwrap();
        insta::assert_snapshot!(r.markdown(), @r"
        | set    | scenario | pass@1              |
        |--------|----------|---------------------|
        | main   | a        | 0.50 \[0.25, 0.75\] |
        | main   | b        | 0.25 \[0.00, 0.50\] |
        | unseen | c        | 1.00                |
        | mean   |          | 0.58                |
        ");
        assert_eq!(
            r.cells[0][2], "0.50 [0.25, 0.75]",
            "Markdown escapes the brackets, nothing else does"
        );
        assert_eq!(r.values[0][2], json!(0.5), "the value stays the number");
        let by_set = spec(json!({"title": "t", "rows": ["set"], "columns": ["pass@1"]}));
        let r = render(&by_set, &data, None).unwrap();
        assert_eq!(r.cells[0][1], "0.38", "a mean of two rows has no interval of its own");
    }

    #[test]
    fn mark_nonzero_marks_the_intervals_that_exclude_zero() {
        let data = rows(json!([
            {"target": "secure", "margin": 0.2, "margin_lo": 0.05, "margin_hi": 0.3},
            {"target": "vulnerable", "margin": -0.2, "margin_lo": -0.3, "margin_hi": -0.01},
            {"target": "none", "margin": 0.01, "margin_lo": -0.02, "margin_hi": 0.04}
        ]));
        let t = spec(json!({"title": "t", "rows": ["target"], "columns": ["margin"], "mark_nonzero": true}));
        let cells: Vec<String> = render(&t, &data, None)
            .unwrap()
            .cells
            .into_iter()
            .map(|r| r[1].clone())
            .collect();
        assert_eq!(
            cells,
            ["0.20 [0.05, 0.30] *", "-0.20 [-0.30, -0.01] *", "0.01 [-0.02, 0.04]"]
        );
        let plain = spec(json!({"title": "t", "rows": ["target"], "columns": ["margin"]}));
        assert_eq!(render(&plain, &data, None).unwrap().cells[0][1], "0.20 [0.05, 0.30]");
    }

    #[test]
    fn integer_columns_print_as_integers_unless_a_mean_comes_out_fractional() {
        let data = rows(json!([
            {"weights": "W_sec", "units": 31, "flag": 1, "margin": 1.0},
            {"weights": "W_vul", "units": 31, "flag": 0, "margin": 2.0},
            {"weights": "W_vul", "units": 31, "flag": 1, "margin": 2.0}
        ]));
        let t = spec(json!({"title": "t", "rows": ["weights"], "columns": ["units", "flag", "margin"], "decimals": 2}));
        let cells = render(&t, &data, None).unwrap().cells;
        // `flag`'s mean of 0 and 1 is 0.5, so its whole column keeps decimals; `margin` is
        // written as floats, so 1.0 is a measurement, not a count.
        assert_eq!(cells[0], ["W_sec", "31", "1.00", "1.00"]);
        assert_eq!(cells[1], ["W_vul", "31", "0.50", "2.00"]);
    }

    #[test]
    fn sorts_aggregates_per_column_totals_per_set_and_keeps_numbers_as_numbers() {
        let data = rows(json!([
            {"set": "main", "scenario": "a", "n": 4, "pass@1": 0.5},
            {"set": "main", "scenario": "b", "n": 4, "pass@1": 0.25},
            {"set": "unseen", "scenario": "c", "n": 2, "pass@1": 1.0},
            {"set": "validation", "scenario": "v", "n": 9, "pass@1": 0.0}
        ]));
        let t = spec(
            json!({"title": "t", "filter": {"set": ["main", "unseen"]}, "rows": ["set", "scenario"],
                            "columns": ["n", "pass@1"], "aggregate": {"n": "sum"}, "total_by": "set",
                            "sort": ["-pass@1"]}),
        );
        let r = render(&t, &data, None).unwrap();
        insta::assert_snapshot!(r.markdown(), @r"
        | set            | scenario | n   | pass@1 |
        |----------------|----------|-----|--------|
        | unseen         | c        | 2   | 1.00   |
        | main           | a        | 4   | 0.50   |
        | main           | b        | 4   | 0.25   |
        | total (main)   |          | 8   | 0.38   |
        | total (unseen) |          | 2   | 1.00   |
        ");
        assert_eq!(
            r.objects()[3],
            json!({"set": "total (main)", "scenario": "", "n": 8.0, "pass@1": 0.375})
                .as_object()
                .unwrap()
                .clone(),
            "report.json keeps the unrounded number"
        );

        let bad = spec(json!({"title": "t", "rows": ["scenario"], "columns": ["n"], "sort": ["-pass"]}));
        let err = render(&bad, &data, None).unwrap_err().to_string();
        assert!(err.contains("`sort` names `pass`, which is not a column"), "{err}");
        let bad = spec(json!({"title": "t", "rows": ["scenario"], "columns": ["n"], "total_by": "set"}));
        let err = render(&bad, &data, None).unwrap_err().to_string();
        assert!(
            err.contains("`total_by` field `set` must be one of the table's `rows`"),
            "{err}"
        );
    }
}
