//! Figures: which rows become which points. `plot` draws them.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::rows::{interval, matches, text, From};
use super::ReportError;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FigureSpec {
    pub title: String,
    pub kind: FigureKind,
    #[serde(default)]
    pub from: From,
    /// Keep only rows whose fields equal these values (a list: any of them).
    #[serde(default)]
    pub filter: BTreeMap<String, Value>,
    /// The field along the x axis: a number for `line` (otherwise its values are categories in
    /// the order seen) and `scatter`, categories for `bars`.
    pub x: String,
    /// The value field, or several: each is a series of its own (times `series`).
    pub y: Fields,
    /// Fields whose values tell series apart, e.g. `[strategy, operator]`: one line (or bar per
    /// group) each. Rows of a series sharing an x are averaged.
    #[serde(default)]
    pub series: Vec<String>,
    /// Horizontal lines at the mean `y` of the rows matching each filter, e.g. the base model,
    /// W_sec and W_vul beside a sweep (SecVecCoder Figure 3). Drawn from all rows, not only
    /// those `filter` keeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<HorizontalLine>,
    /// `scatter`: the field written beside each point, e.g. `scenario`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Axis titles; the field names by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y_title: Option<String>,
    /// The y axis's range; `[0, 1]` when every value is a rate, else the values' span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y_range: Option<[f64; 2]>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum FigureKind {
    /// y against x, one line per series (e.g. sec-pass@1 over θ).
    Line,
    /// Grouped bars: one group per x category, one bar per series (e.g. per temperature).
    Bars,
    /// One point per row (e.g. functional against secure per scenario).
    Scatter,
}

/// One field name or several.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Fields {
    One(String),
    Many(Vec<String>),
}

impl Fields {
    pub fn names(&self) -> Vec<String> {
        match self {
            Fields::One(f) => vec![f.clone()],
            Fields::Many(fs) => fs.clone(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HorizontalLine {
    pub label: String,
    pub filter: BTreeMap<String, Value>,
}

/// A figure's data, ready to draw.
#[derive(Debug, Serialize)]
pub struct Figure {
    pub title: String,
    pub kind: FigureKind,
    pub x_title: String,
    pub y_title: String,
    /// The x axis's categories (position i is category i), or empty for a numeric axis.
    pub categories: Vec<String>,
    pub series: Vec<Series>,
    pub lines: Vec<(String, f64)>,
    pub y_range: (f64, f64),
}

#[derive(Debug, Serialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

#[derive(Debug, Serialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The interval of a point drawn from one row that has one (`<y>_lo`, `<y>_hi`, as `score`
    /// writes them), shown as an error bar; a mean of rows has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<(f64, f64)>,
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// The points of `spec` among `pool` (the rows or sets of every input).
pub fn figure(spec: &FigureSpec, pool: &[Map<String, Value>]) -> Result<Figure, ReportError> {
    let err = |what: String| ReportError::Figure {
        figure: spec.title.clone(),
        what,
    };
    let ys = spec.y.names();
    if ys.is_empty() {
        return Err(err("`y` names no field".into()));
    }
    let kept: Vec<&Map<String, Value>> = pool
        .iter()
        .filter(|r| matches(r, &spec.filter) && r.contains_key(&spec.x) && ys.iter().any(|y| r.contains_key(y)))
        .collect();
    if kept.is_empty() {
        return Err(err(format!(
            "no row has both `{}` and {} (after the filter); check the field names against the upstream results",
            spec.x,
            ys.iter().map(|y| format!("`{y}`")).collect::<Vec<_>>().join(" or ")
        )));
    }
    let numeric_x = spec.kind != FigureKind::Bars && kept.iter().all(|r| r[&spec.x].is_number());
    if spec.kind == FigureKind::Scatter && !numeric_x {
        return Err(err(format!("a scatter plot needs numbers in `{}`", spec.x)));
    }
    let mut categories: Vec<String> = Vec::new();
    if !numeric_x {
        for r in &kept {
            let c = text(r.get(&spec.x));
            if !categories.contains(&c) {
                categories.push(c);
            }
        }
        // Numbers as categories (temperatures, top-k) go in numeric order.
        if kept.iter().all(|r| r[&spec.x].is_number()) {
            categories.sort_by(|a, b| {
                let (p, q) = (a.parse::<f64>().unwrap_or(0.0), b.parse::<f64>().unwrap_or(0.0));
                p.partial_cmp(&q).unwrap_or(std::cmp::Ordering::Equal)
            });
        }
    }
    let x_of = |r: &Map<String, Value>| -> f64 {
        if numeric_x {
            r[&spec.x].as_f64().unwrap_or(f64::NAN)
        } else {
            let c = text(r.get(&spec.x));
            categories.iter().position(|k| *k == c).unwrap_or(0) as f64
        }
    };
    let series_name = |r: &Map<String, Value>, y: &str| -> String {
        let mut parts: Vec<String> = spec.series.iter().map(|s| text(r.get(s))).collect();
        if ys.len() > 1 || parts.is_empty() {
            parts.push(y.to_string());
        }
        parts.join(" · ")
    };
    let mut series: IndexMap<String, Vec<Point>> = IndexMap::new();
    match spec.kind {
        FigureKind::Scatter => {
            for r in &kept {
                for y in &ys {
                    if let Some(v) = r.get(y).and_then(Value::as_f64) {
                        series.entry(series_name(r, y)).or_default().push(Point {
                            x: x_of(r),
                            y: v,
                            label: spec.label.as_ref().map(|l| text(r.get(l))),
                            interval: interval(r, y),
                        });
                    }
                }
            }
        }
        FigureKind::Line | FigureKind::Bars => {
            type AtX = (f64, Vec<f64>, Vec<Option<(f64, f64)>>);
            let mut sums: IndexMap<String, BTreeMap<u64, AtX>> = IndexMap::new();
            for r in &kept {
                for y in &ys {
                    if let Some(v) = r.get(y).and_then(Value::as_f64) {
                        let x = x_of(r);
                        let at = sums.entry(series_name(r, y)).or_default().entry(ordered(x)).or_insert((
                            x,
                            Vec::new(),
                            Vec::new(),
                        ));
                        at.1.push(v);
                        at.2.push(interval(r, y));
                    }
                }
            }
            for (name, by_x) in sums {
                let points = by_x
                    .into_values()
                    .filter_map(|(x, vs, intervals)| {
                        mean(&vs).map(|y| Point {
                            x,
                            y,
                            label: None,
                            interval: match intervals[..] {
                                [one] => one,
                                _ => None,
                            },
                        })
                    })
                    .collect();
                series.insert(name, points);
            }
        }
    }
    let mut lines = Vec::new();
    for line in &spec.lines {
        for y in &ys {
            let values: Vec<f64> = pool
                .iter()
                .filter(|r| matches(r, &line.filter))
                .filter_map(|r| r.get(y).and_then(Value::as_f64))
                .collect();
            let name = if ys.len() > 1 {
                format!("{} · {y}", line.label)
            } else {
                line.label.clone()
            };
            match mean(&values) {
                Some(v) => lines.push((name, v)),
                None => {
                    return Err(err(format!(
                        "line `{}`: no row matching its filter has `{y}`",
                        line.label
                    )))
                }
            }
        }
    }
    // The axis holds the error bars too.
    let all_y: Vec<f64> = series
        .values()
        .flatten()
        .flat_map(|p| [Some(p.y), p.interval.map(|i| i.0), p.interval.map(|i| i.1)])
        .flatten()
        .chain(lines.iter().map(|(_, v)| *v))
        .collect();
    let y_range = match spec.y_range {
        Some([lo, hi]) if lo < hi => (lo, hi),
        Some(r) => return Err(err(format!("`y_range` {r:?} must go from low to high"))),
        None => span(&all_y, spec.kind == FigureKind::Bars),
    };
    Ok(Figure {
        title: spec.title.clone(),
        kind: spec.kind,
        x_title: spec.x_title.clone().unwrap_or_else(|| spec.x.clone()),
        y_title: spec.y_title.clone().unwrap_or_else(|| ys.join(", ")),
        categories,
        series: series
            .into_iter()
            .map(|(name, points)| Series { name, points })
            .collect(),
        lines,
        y_range,
    })
}

/// A float as a map key that sorts like the float (finite values only reach here).
fn ordered(x: f64) -> u64 {
    let bits = x.to_bits();
    if x.is_sign_negative() {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// `[0, 1]` for rates; otherwise the values' span with a margin, from 0 for bars.
fn span(ys: &[f64], from_zero: bool) -> (f64, f64) {
    let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if lo >= 0.0 && hi <= 1.0 {
        return (0.0, 1.0);
    }
    let lo = if from_zero { lo.min(0.0) } else { lo };
    let pad = ((hi - lo) * 0.08).max(1e-9);
    (if from_zero && lo == 0.0 { 0.0 } else { lo - pad }, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::rows::objects as pool;
    use serde_json::json;

    fn spec(v: Value) -> FigureSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_line_per_series_averages_rows_at_the_same_x_and_lines_come_from_all_rows() {
        let rows = pool(json!([
            {"weights": "base", "sec": 0.2},
            {"weights": "steered", "operator": "negation", "theta": 1.5, "sec": 0.5},
            {"weights": "steered", "operator": "negation", "theta": 0.5, "sec": 0.3},
            {"weights": "steered", "operator": "negation", "theta": 0.5, "sec": 0.5},
            {"weights": "steered", "operator": "contrast", "theta": 0.5, "sec": null}
        ]));
        let f = figure(
            &spec(
                json!({"title": "t", "kind": "line", "filter": {"weights": "steered"}, "x": "theta", "y": "sec",
                         "series": ["operator"], "lines": [{"label": "base", "filter": {"weights": "base"}}]}),
            ),
            &rows,
        )
        .unwrap();
        assert!(f.categories.is_empty());
        let negation: Vec<(f64, f64)> = f.series[0].points.iter().map(|p| (p.x, p.y)).collect();
        assert_eq!(f.series[0].name, "negation");
        assert_eq!(
            negation,
            vec![(0.5, 0.4), (1.5, 0.5)],
            "sorted by x, the two rows at 0.5 averaged"
        );
        assert_eq!(f.series.len(), 1, "a series with no values draws nothing");
        assert_eq!(f.lines, vec![("base".to_string(), 0.2)]);
        assert_eq!(f.y_range, (0.0, 1.0));
    }

    #[test]
    fn bars_put_numeric_categories_in_order_and_a_missing_field_is_named() {
        let rows = pool(json!([
            {"temperature": 0.8, "method": "a", "pass@1": 0.5, "sec-pass@1": 0.25},
            {"temperature": 0.2, "method": "a", "pass@1": 0.75, "sec-pass@1": 0.5}
        ]));
        let f = figure(
            &spec(json!({"title": "t", "kind": "bars", "x": "temperature", "y": ["pass@1", "sec-pass@1"], "series": ["method"]})),
            &rows,
        )
        .unwrap();
        assert_eq!(f.categories, vec!["0.2", "0.8"]);
        let names: Vec<&str> = f.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["a · pass@1", "a · sec-pass@1"]);
        assert_eq!(f.series[0].points[0].y, 0.75);

        let err = figure(
            &spec(json!({"title": "t", "kind": "line", "x": "theta", "y": "sec"})),
            &rows,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no row has both `theta` and `sec`"), "{err}");
        let err = figure(
            &spec(json!({"title": "t", "kind": "scatter", "x": "method", "y": "pass@1"})),
            &rows,
        )
        .unwrap_err();
        assert!(err.to_string().contains("needs numbers in `method`"), "{err}");
    }
}
