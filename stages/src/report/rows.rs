//! The rows tables and figures are drawn from: how a field reads as text and which rows a
//! filter keeps.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const MISSING: &str = "—";

/// Which rows of the results a table or figure draws from.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum From {
    /// Each stage's `rows`.
    #[default]
    Rows,
    /// `score`'s metrics averaged over each set of scenarios (e.g. main and unseen CWEs).
    Sets,
}

/// A field as text: strings as they are, numbers as JSON writes them, missing as a dash.
pub fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => MISSING.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The interval a row carries for `field` (`<field>_lo`, `<field>_hi`, as `score` and `margin`
/// write them).
pub fn interval(row: &Map<String, Value>, field: &str) -> Option<(f64, f64)> {
    let bound = |end: &str| row.get(&format!("{field}_{end}")).and_then(Value::as_f64);
    bound("lo").zip(bound("hi"))
}

/// Whether a row's fields equal the filter's values; a list in the filter admits any of its
/// values. Numbers compare as numbers (`theta: 0` matches a row's `0.0`).
pub fn matches(row: &Map<String, Value>, filter: &BTreeMap<String, Value>) -> bool {
    filter.iter().all(|(k, want)| {
        let have = text(row.get(k));
        let same = |w: &Value| {
            let w = text(Some(w));
            w == have || matches!((w.parse::<f64>(), have.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
        };
        match want {
            Value::Array(any) => any.iter().any(same),
            one => same(one),
        }
    })
}

/// Rows from a JSON array of objects, for tests.
#[cfg(test)]
pub fn objects(v: Value) -> Vec<Map<String, Value>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_filter_list_admits_any_of_its_values_and_numbers_match_their_text() {
        let row = json!({"set": "main", "theta": 1.5}).as_object().unwrap().clone();
        let f = |v: Value| serde_json::from_value::<BTreeMap<String, Value>>(v).unwrap();
        assert!(matches(&row, &f(json!({"set": ["main", "unseen"]}))));
        assert!(!matches(&row, &f(json!({"set": ["validation"]}))));
        assert!(matches(&row, &f(json!({"theta": 1.5, "set": "main"}))));
        assert!(!matches(&row, &f(json!({"theta": 0.5}))));
        assert!(!matches(&row, &f(json!({"missing": "x"}))));
        let zero = json!({"theta": 0.0}).as_object().unwrap().clone();
        assert!(matches(&zero, &f(json!({"theta": 0}))));
        assert!(!matches(&zero, &f(json!({"theta": [0.5, "0.05"]}))));
    }
}
