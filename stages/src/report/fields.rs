//! The plan-time check of a report: every field a table or figure names must be one its inputs
//! will have (a results field of the upstream kind, a matrix or constant label, `stage`), so a
//! misspelt column fails before the stages upstream of it run, not as a column of dashes.

use std::collections::BTreeSet;

use secvec_stage::{did_you_mean, ParamError, Upstreams};

use super::rows::From;
use super::ReportParams;

/// The fields rows drawn `from` rows or sets will have; `None` when an input's are not known
/// before it runs (a `{path: ...}`, or a kind that does not declare them).
fn known_fields(params: &ReportParams, upstream: &Upstreams, from: From) -> Option<BTreeSet<String>> {
    let mut known: BTreeSet<String> = params.labels.keys().cloned().collect();
    known.insert("stage".into());
    for input in upstream.slot("results") {
        let fields = input.fields.as_ref()?;
        known.extend(input.labels.iter().cloned());
        known.extend(match from {
            From::Rows => fields.rows.iter().cloned(),
            From::Sets => fields.sets.iter().cloned(),
        });
    }
    Some(known)
}

/// Checks every field the report's tables and figures name.
pub fn check(params: &ReportParams, upstream: &Upstreams) -> Result<(), ParamError> {
    for (i, t) in params.tables.iter().enumerate() {
        let Some(known) = known_fields(params, upstream, t.from) else {
            continue;
        };
        let at = |what: &str| format!("tables[{i}].{what}");
        let mut named: Vec<(String, &str)> = Vec::new();
        named.extend(t.filter.keys().map(|k| (at(&format!("filter.{k}")), k.as_str())));
        named.extend(t.exclude.keys().map(|k| (at(&format!("exclude.{k}")), k.as_str())));
        named.extend(
            t.rows
                .iter()
                .enumerate()
                .map(|(j, f)| (at(&format!("rows[{j}]")), f.as_str())),
        );
        named.extend(
            t.columns
                .iter()
                .enumerate()
                .map(|(j, f)| (at(&format!("columns[{j}]")), f.as_str())),
        );
        named.extend(t.pivot.iter().map(|f| (at("pivot"), f.as_str())));
        named.extend(t.total_by.iter().map(|f| (at("total_by"), f.as_str())));
        if let Some(b) = &t.relative_to {
            named.extend(
                b.filter
                    .keys()
                    .map(|k| (at(&format!("relative_to.filter.{k}")), k.as_str())),
            );
            named.extend(
                b.matching
                    .iter()
                    .enumerate()
                    .map(|(j, f)| (at(&format!("relative_to.match[{j}]")), f.as_str())),
            );
        }
        unknown(&named, &known, &format!("table `{}`", t.title), t.from)?;
    }
    for (i, f) in params.figures.iter().enumerate() {
        let Some(known) = known_fields(params, upstream, f.from) else {
            continue;
        };
        let at = |what: &str| format!("figures[{i}].{what}");
        let mut named: Vec<(String, &str)> = vec![(at("x"), f.x.as_str())];
        let ys = f.y.names();
        named.extend(ys.iter().map(|y| (at("y"), y.as_str())));
        named.extend(f.filter.keys().map(|k| (at(&format!("filter.{k}")), k.as_str())));
        named.extend(
            f.series
                .iter()
                .enumerate()
                .map(|(j, s)| (at(&format!("series[{j}]")), s.as_str())),
        );
        named.extend(f.label.iter().map(|l| (at("label"), l.as_str())));
        for (j, line) in f.lines.iter().enumerate() {
            named.extend(
                line.filter
                    .keys()
                    .map(|k| (at(&format!("lines[{j}].filter.{k}")), k.as_str())),
            );
        }
        unknown(&named, &known, &format!("figure `{}`", f.title), f.from)?;
    }
    Ok(())
}

fn unknown(named: &[(String, &str)], known: &BTreeSet<String>, what: &str, from: From) -> Result<(), ParamError> {
    let Some((path, field)) = named.iter().find(|(_, f)| !known.contains(*f)) else {
        return Ok(());
    };
    let pool = match from {
        From::Rows => "rows",
        From::Sets => "sets",
    };
    Err(ParamError::new(
        path.clone(),
        format!(
            "{what} names field `{field}`, which no row of its inputs' {pool} has{}; the fields are {}",
            did_you_mean(field, known.iter().map(String::as_str)),
            known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use secvec_stage::{ResultFields, Upstream};
    use serde_json::json;

    use super::*;

    fn upstream(fields: Option<ResultFields>, labels: &[&str]) -> Upstreams {
        let input = Upstream {
            labels: labels.iter().map(|l| l.to_string()).collect(),
            fields,
        };
        Upstreams {
            slots: [("results".to_string(), vec![input])].into(),
        }
    }

    fn params(v: serde_json::Value) -> ReportParams {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_field_no_input_has_is_named_with_its_place_and_the_closest_field() {
        let fields = ResultFields::rows(["scenario", "pass@1"]).with_sets(["set", "pass@1"]);
        let up = upstream(Some(fields), &["theta"]);
        let good = params(json!({"title": "t",
            "tables": [{"title": "a", "rows": ["stage", "theta", "scenario"], "columns": ["pass@1"], "filter": {"scenario": "x"}},
                       {"title": "b", "from": "sets", "rows": ["set"], "columns": ["pass@1"]}],
            "figures": [{"title": "f", "kind": "line", "x": "theta", "y": ["pass@1"]}]}));
        check(&good, &up).unwrap();

        let bad = params(
            json!({"title": "t", "tables": [{"title": "a", "rows": ["scenario"], "columns": ["pass@1", "pas@1"]}]}),
        );
        let err = check(&bad, &up).unwrap_err();
        assert_eq!(err.path, "tables[0].columns[1]");
        assert!(
            err.message.contains("`pas@1`") && err.message.contains("did you mean `pass@1`"),
            "{err}"
        );

        // `set` is a field of the sets, not of the rows.
        let bad = params(json!({"title": "t", "tables": [{"title": "a", "rows": ["set"], "columns": ["pass@1"]}]}));
        assert_eq!(check(&bad, &up).unwrap_err().path, "tables[0].rows[0]");
        let bad = params(
            json!({"title": "t", "figures": [{"title": "f", "kind": "bars", "x": "scenario", "y": "pass@1", "series": ["thetta"]}]}),
        );
        assert_eq!(check(&bad, &up).unwrap_err().path, "figures[0].series[0]");
    }

    #[test]
    fn inputs_whose_fields_are_unknown_before_they_run_are_not_guessed_at() {
        let bad =
            params(json!({"title": "t", "tables": [{"title": "a", "rows": ["anything"], "columns": ["at_all"]}]}));
        check(&bad, &upstream(None, &[])).unwrap();
    }
}
