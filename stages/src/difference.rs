//! `difference`: one model's results minus another's on the same units, with a paired bootstrap
//! interval — the held-out pairs of two `margin` stages (W_sec's margin minus W_base's), or the
//! scenarios of two `score` stages (the steered model's sec-pass@1 minus W_sec's). Pairing is what
//! gives the interval its power: what the units share cancels out of the difference.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context};
use schemars::JsonSchema;
use secvec_artifacts::results::{self, Results};
use secvec_artifacts::scores;
use secvec_score::bootstrap::Bootstrap;
use secvec_score::metrics::Judged;
use secvec_score::paired::{differences, Measured};
use secvec_stage::{InputSlot, ParamError, ResultFields, Stage, StageContext, Upstream, Upstreams};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::interval;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DifferenceParams {
    /// Bootstrap resamples (of the units both sides measured) behind each interval.
    #[serde(default = "interval::d_bootstrap")]
    pub bootstrap: usize,
    #[serde(default = "interval::d_confidence")]
    pub confidence: f64,
    #[serde(default)]
    pub bootstrap_seed: u64,
}

/// The metrics a difference can carry: a margin's, or a score's at k = 1.
const METRICS: [&str; 7] = [
    "margin",
    "pass@1",
    "sec-pass@1",
    "sec@1_pass",
    "sven_sr",
    "secure_rate",
    "secure_pass@1",
];

pub struct Difference;

impl Stage for Difference {
    type Params = DifferenceParams;
    const KIND: &'static str = "difference";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str =
        "One stage's margins or scores minus another's on the same pairs or scenarios, with a paired bootstrap interval.";

    fn inputs() -> Vec<InputSlot> {
        let slot = |name, doc| InputSlot {
            name,
            accepts: &[results::TAG],
            many: false,
            optional: false,
            doc,
        };
        vec![
            slot("of", "a `margin` or `score` stage: what is measured"),
            slot(
                "against",
                "a stage of the same kind on the same pairs or scenarios: the baseline subtracted",
            ),
        ]
    }

    fn output_tags() -> Vec<&'static str> {
        vec![results::TAG]
    }

    fn check(p: &DifferenceParams, upstream: &Upstreams) -> Result<(), ParamError> {
        interval::check(p.bootstrap, p.confidence)?;
        let kinds: Vec<Option<Kind>> = ["of", "against"]
            .iter()
            .map(|slot| upstream.slot(slot).first().and_then(Kind::of_upstream))
            .collect();
        for (slot, kind) in ["of", "against"].iter().zip(&kinds) {
            if let (None, Some(Upstream { fields: Some(_), .. })) = (kind, upstream.slot(slot).first()) {
                return Err(ParamError::new(
                    *slot,
                    "takes a `margin` or a `score` stage; this stage's results are neither",
                ));
            }
        }
        if let [Some(a), Some(b)] = kinds.as_slice() {
            if a != b {
                return Err(ParamError::new(
                    "against",
                    format!(
                        "is a {} stage but `of` is a {} stage; compare like with like",
                        b.name(),
                        a.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn result_fields(_: &DifferenceParams) -> Option<ResultFields> {
        let mut sets = vec!["set".to_string(), "units".to_string()];
        for m in METRICS {
            sets.extend([m.to_string(), format!("{m}_lo"), format!("{m}_hi")]);
        }
        Some(ResultFields::rows(Vec::<String>::new()).with_sets(sets))
    }

    fn run(&self, p: &DifferenceParams, ctx: &StageContext) -> anyhow::Result<()> {
        let boot = Bootstrap {
            resamples: p.bootstrap,
            confidence: p.confidence,
            seed: p.bootstrap_seed,
        };
        let (of, against) = (&ctx.required("of")?.path, &ctx.required("against")?.path);
        let read = |dir: &std::path::Path| Results::read(dir).with_context(|| format!("reading {}", dir.display()));
        let (a, b) = (read(of)?, read(against)?);
        let sets = match (Kind::of_rows(&a.rows), Kind::of_rows(&b.rows)) {
            (Some(Kind::Margin), Some(Kind::Margin)) => vec![margin_difference(&a, &b, &boot)?],
            (Some(Kind::Score), Some(Kind::Score)) => {
                score_differences(&a, &scores::read(of)?, &b, &scores::read(against)?, &boot)?
            }
            (x, y) => bail!(
                "`of` ({}) holds {} results and `against` ({}) {}; give two `margin` or two `score` stages",
                of.display(),
                x.map_or("neither margin nor score", Kind::name),
                against.display(),
                y.map_or("neither margin nor score", Kind::name),
            ),
        };
        Results::default().with_sets(sets).write(ctx)?;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Margin,
    Score,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Margin => "margin",
            Kind::Score => "score",
        }
    }

    fn of_fields(fields: &[impl AsRef<str>]) -> Option<Kind> {
        let has = |f: &str| fields.iter().any(|x| x.as_ref() == f);
        if has("pair") && has("margin") {
            Some(Kind::Margin)
        } else if has("scenario") && has("oracle") {
            Some(Kind::Score)
        } else {
            None
        }
    }

    fn of_upstream(u: &Upstream) -> Option<Kind> {
        Kind::of_fields(&u.fields.as_ref()?.rows)
    }

    fn of_rows(rows: &[Map<String, Value>]) -> Option<Kind> {
        Kind::of_fields(&rows.first()?.keys().collect::<Vec<_>>())
    }
}

/// A set row: its name, how many units both sides measured, and each metric's difference.
fn set_row(
    set: &str,
    units: usize,
    values: impl IntoIterator<Item = (String, Option<f64>, Option<(f64, f64)>)>,
) -> Value {
    let mut row = json!({"set": set, "units": units});
    for (metric, value, interval) in values {
        row[format!("{metric}_lo")] = json!(interval.map(|i| i.0));
        row[format!("{metric}_hi")] = json!(interval.map(|i| i.1));
        row[metric] = json!(value);
    }
    row
}

/// Per-pair margins, matched by pair; the interval of their mean difference.
fn margin_difference(a: &Results, b: &Results, boot: &Bootstrap) -> anyhow::Result<Value> {
    let split = |r: &Results| {
        r.sets
            .first()
            .and_then(|s| s.get("set"))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let (sa, sb) = (split(a), split(b));
    ensure!(
        sa == sb,
        "`of` measured split {sa:?} and `against` split {sb:?}: a paired difference needs the same pairs"
    );
    let by_pair = |r: &Results| -> BTreeMap<u64, f64> {
        r.rows
            .iter()
            .filter_map(|row| Some((row.get("pair")?.as_u64()?, row.get("margin")?.as_f64()?)))
            .collect()
    };
    let (ma, mb) = (by_pair(a), by_pair(b));
    let diffs: Vec<f64> = ma.iter().filter_map(|(k, x)| Some(x - mb.get(k)?)).collect();
    ensure!(!diffs.is_empty(), "`of` and `against` share no measured pair");
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    Ok(set_row(
        sa.as_deref().unwrap_or_default(),
        diffs.len(),
        [("margin".to_string(), Some(mean), boot.mean_interval(&diffs))],
    ))
}

/// One side's scenarios: each one's distinct programs and whether an oracle judged it, by set.
type Side = BTreeMap<String, BTreeMap<String, (Vec<Judged>, bool)>>;

fn side(results: &Results, judged: &[scores::JudgedProgram]) -> Side {
    let mut out: Side = BTreeMap::new();
    let mut set_of = BTreeMap::new();
    for row in &results.rows {
        let (Some(id), Some(set)) = (
            row.get("scenario").and_then(Value::as_str),
            row.get("set").and_then(Value::as_str),
        ) else {
            continue;
        };
        let known = row.get("oracle").is_some_and(|o| !o.is_null());
        set_of.insert(id.to_string(), set.to_string());
        out.entry(set.to_string())
            .or_default()
            .insert(id.to_string(), (Vec::new(), known));
    }
    for j in judged {
        let Some(set) = set_of.get(&j.scenario) else { continue };
        if let Some(entry) = out.get_mut(set).and_then(|s| s.get_mut(&j.scenario)) {
            entry.0.push(Judged {
                count: j.count,
                valid: j.valid,
                functional: j.functional,
                secure: j.secure.unwrap_or(false),
            });
        }
    }
    out
}

/// Per set, the scenarios both sides scored, paired.
fn score_differences(
    a: &Results,
    ja: &[scores::JudgedProgram],
    b: &Results,
    jb: &[scores::JudgedProgram],
    boot: &Bootstrap,
) -> anyhow::Result<Vec<Value>> {
    let (a, b) = (side(a, ja), side(b, jb));
    let mut rows = Vec::new();
    for (set, scenarios) in &a {
        let Some(other) = b.get(set) else { continue };
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for (id, (judged, known)) in scenarios {
            if let Some((theirs, their_known)) = other.get(id) {
                left.push(Measured { judged, known: *known });
                right.push(Measured {
                    judged: theirs,
                    known: *their_known,
                });
            }
        }
        if left.is_empty() {
            continue;
        }
        let d = differences(&left, &right, boot);
        rows.push(set_row(
            set,
            left.len(),
            d.into_iter().map(|d| (d.metric, d.value, d.interval)),
        ));
    }
    ensure!(!rows.is_empty(), "`of` and `against` share no scored scenario");
    Ok(rows)
}
