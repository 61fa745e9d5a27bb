//! `trend`: whether a figure moves monotonically with a setting — Spearman's ρ between `x` (a
//! matrix value such as θ) and the mean of `y` over the rows at each `x`, per group (`by`, e.g.
//! the operator). With `unit` (e.g. `pair`), ρ gets a bootstrap interval that resamples the
//! units, the same draw at every `x`, as they were measured on the same units.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::ensure;
use indexmap::IndexMap;
use schemars::JsonSchema;
use secvec_artifacts::results::{self, Results};
use secvec_score::bootstrap::Bootstrap;
use secvec_score::correlation::spearman;
use secvec_stage::{did_you_mean, InputSlot, ParamError, ResultFields, Stage, StageContext, Upstreams};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::interval;
use crate::report::with_labels;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrendParams {
    /// The setting, a number: a matrix value (`theta`) or a results field.
    pub x: String,
    /// The figure whose trend is measured, a number in the results rows (`margin`).
    pub y: String,
    /// One ρ per value of these fields (`[operator]`).
    #[serde(default)]
    pub by: Vec<String>,
    /// The field naming what each row measured (`pair`, `scenario`): resampled for ρ's interval.
    /// Without it ρ has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default = "interval::d_bootstrap")]
    pub bootstrap: usize,
    #[serde(default = "interval::d_confidence")]
    pub confidence: f64,
    #[serde(default)]
    pub bootstrap_seed: u64,
}

pub struct Trend;

impl Stage for Trend {
    type Params = TrendParams;
    const KIND: &'static str = "trend";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str =
        "Spearman's ρ between a setting (θ) and a figure's mean at each value of it, per group, with a bootstrap interval over units.";

    fn inputs() -> Vec<InputSlot> {
        vec![InputSlot {
            name: "results",
            accepts: &[results::TAG],
            many: true,
            optional: false,
            doc: "the stages measured at each setting, gathered (`margin-steered[*]`); matrix values join each row",
        }]
    }

    fn output_tags() -> Vec<&'static str> {
        vec![results::TAG]
    }

    fn check(p: &TrendParams, upstream: &Upstreams) -> Result<(), ParamError> {
        interval::check(p.bootstrap, p.confidence)?;
        let mut known: BTreeSet<&str> = BTreeSet::new();
        for u in upstream.slot("results") {
            let Some(fields) = &u.fields else { return Ok(()) };
            known.extend(u.labels.iter().map(String::as_str));
            known.extend(fields.rows.iter().map(String::as_str));
        }
        let named = [("x", &p.x), ("y", &p.y)]
            .into_iter()
            .chain(p.by.iter().map(|b| ("by", b)))
            .chain(p.unit.iter().map(|u| ("unit", u)));
        for (param, field) in named {
            if !known.contains(field.as_str()) {
                return Err(ParamError::new(
                    param,
                    format!(
                        "`{field}` is neither a matrix value nor a results field of the inputs{}; they have {known:?}",
                        did_you_mean(field, known.iter().copied())
                    ),
                ));
            }
        }
        Ok(())
    }

    fn result_fields(p: &TrendParams) -> Option<ResultFields> {
        let mut rows = p.by.clone();
        rows.extend(["points", "units", "spearman_rho", "spearman_rho_lo", "spearman_rho_hi"].map(String::from));
        Some(ResultFields::rows(rows))
    }

    fn run(&self, p: &TrendParams, ctx: &StageContext) -> anyhow::Result<()> {
        let mut rows: Vec<Map<String, Value>> = Vec::new();
        for input in ctx.inputs("results") {
            let read = Results::read(&input.path)?.rows;
            rows.extend(read.into_iter().map(|row| with_labels(row, &input.labels)));
        }
        let boot = Bootstrap {
            resamples: p.bootstrap,
            confidence: p.confidence,
            seed: p.bootstrap_seed,
        };
        let text = |row: &Map<String, Value>, f: &str| row.get(f).map(|v| v.to_string()).unwrap_or_default();
        let mut groups: IndexMap<Vec<String>, Vec<&Map<String, Value>>> = IndexMap::new();
        for row in &rows {
            groups
                .entry(p.by.iter().map(|b| text(row, b)).collect())
                .or_default()
                .push(row);
        }
        let mut out = Vec::new();
        for (key, members) in groups {
            let mut series = Series::default();
            for row in members {
                let number = |f: &str| row.get(f).and_then(Value::as_f64);
                let (Some(x), Some(y)) = (number(&p.x), number(&p.y)) else {
                    continue;
                };
                let unit = p.unit.as_ref().map(|u| text(row, u)).unwrap_or_default();
                series.add(x, unit, y);
            }
            ensure!(
                series.by_x.len() >= 2,
                "group {key:?} has {} value(s) of `{}` with a numeric `{}`; a trend needs two or more",
                series.by_x.len(),
                p.x,
                p.y
            );
            let rho = series.rho(None);
            let interval = match (&p.unit, rho) {
                (Some(_), Some(_)) => {
                    let units = series.units.len();
                    boot.interval(boot.index_draws(units).map(|drawn| series.rho(Some(&drawn))))
                }
                _ => None,
            };
            let mut row = json!({"points": series.by_x.len(), "units": series.units.len(),
                                 "spearman_rho": rho, "spearman_rho_lo": interval.map(|i| i.0),
                                 "spearman_rho_hi": interval.map(|i| i.1)});
            for (field, value) in p.by.iter().zip(&key) {
                row[field] = serde_json::from_str(value).unwrap_or(Value::Null);
            }
            out.push(row);
        }
        ensure!(!out.is_empty(), "no input row has the fields `{}` and `{}`", p.x, p.y);
        Results::from_rows(out).write(ctx)?;
        Ok(())
    }
}

/// The values of `y` at each `x`, by unit.
#[derive(Default)]
struct Series {
    units: IndexMap<String, usize>,
    /// x (as its bits, in order) → per unit index, the values measured there.
    by_x: BTreeMap<u64, (f64, BTreeMap<usize, Vec<f64>>)>,
}

impl Series {
    fn add(&mut self, x: f64, unit: String, y: f64) {
        let next = self.units.len();
        let u = *self.units.entry(unit).or_insert(next);
        let slot = self.by_x.entry(order_key(x)).or_insert_with(|| (x, BTreeMap::new()));
        slot.1.entry(u).or_default().push(y);
    }

    /// ρ of x and the mean y at each x, over every unit or over the units drawn (with their
    /// multiplicity).
    fn rho(&self, drawn: Option<&[usize]>) -> Option<f64> {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for (x, at) in self.by_x.values() {
            let values: Vec<f64> = match drawn {
                None => at.values().flatten().copied().collect(),
                Some(d) => d.iter().filter_map(|u| at.get(u)).flatten().copied().collect(),
            };
            if values.is_empty() {
                continue;
            }
            xs.push(*x);
            ys.push(values.iter().sum::<f64>() / values.len() as f64);
        }
        spearman(&xs, &ys)
    }
}

/// An f64's bits mapped so that their order is the numbers' order.
fn order_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trend_shared_by_every_unit_is_certain_and_noise_is_not() {
        let boot = Bootstrap {
            resamples: 500,
            confidence: 0.95,
            seed: 0,
        };
        let mut rising = Series::default();
        let mut noise = Series::default();
        for unit in 0..20 {
            for (i, x) in [0.0, 0.5, 1.0, 1.5, 2.0].into_iter().enumerate() {
                rising.add(x, unit.to_string(), 0.1 * i as f64 + (unit % 7) as f64);
                // Values that do not depend on x: a hash of (unit, step), scrambled.
                let h = ((unit * 5 + i) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                noise.add(x, unit.to_string(), h as f64 / (1u64 << 24) as f64);
            }
        }
        assert_eq!(rising.rho(None), Some(1.0));
        let interval = |s: &Series| boot.interval(boot.index_draws(s.units.len()).map(|d| s.rho(Some(&d))));
        assert_eq!(interval(&rising), Some((1.0, 1.0)));
        let (lo, hi) = interval(&noise).unwrap();
        assert!(lo < 0.0 && hi > 0.0, "[{lo}, {hi}]");
        // Negative numbers order before positive ones.
        assert!(
            order_key(-1.0) < order_key(-0.5) && order_key(-0.5) < order_key(0.0) && order_key(0.0) < order_key(2.0)
        );
    }
}
