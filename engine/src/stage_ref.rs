//! References to another stage's output as manifests write them: `name`, `name[*]` (every
//! variant of a matrix stage), and either with `@key=value,...` picking the variants that have
//! those matrix values. Parsed once, where the manifest is read.

use std::fmt;
use std::str::FromStr;

use indexmap::IndexMap;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StageRef {
    pub stage: String,
    /// `[*]`: every variant the selector picks, as one list.
    pub gather: bool,
    /// `@key=value,...`, in the order written.
    pub select: Vec<(String, String)>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StageRefError {
    #[error("`{0}` names no stage; write `stage`, `stage[*]` or `stage@key=value`")]
    NoStage(String),
    #[error("`{text}`: `{part}` is not `key=value`; pick variants as `{stage}@key=value` (several as `key=value,key2=value2`)")]
    NotKeyValue { text: String, part: String, stage: String },
}

impl StageRef {
    /// A reference to the one output of a stage without a matrix: no `[*]`, no selector.
    pub fn plain(&self) -> Option<&str> {
        (!self.gather && self.select.is_empty()).then_some(self.stage.as_str())
    }

    /// Whether variant `labels` is one the selector picks.
    pub fn picks(&self, labels: &IndexMap<String, String>) -> bool {
        self.select.iter().all(|(k, v)| labels.get(k).is_some_and(|w| w == v))
    }

    /// The variant's labels that the consumer takes on: all but the selected keys, which only
    /// pick (two inputs may pick different values of one key).
    pub fn carried(&self, labels: &IndexMap<String, String>) -> IndexMap<String, String> {
        labels
            .iter()
            .filter(|(k, _)| !self.select.iter().any(|(s, _)| s == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl FromStr for StageRef {
    type Err = StageRefError;

    fn from_str(text: &str) -> Result<StageRef, StageRefError> {
        let (rest, gather) = match text.trim().strip_suffix("[*]") {
            Some(rest) => (rest, true),
            None => (text.trim(), false),
        };
        let (stage, selector) = match rest.split_once('@') {
            Some((stage, selector)) => (stage.trim(), Some(selector)),
            None => (rest, None),
        };
        // `name[*]@key=value` gathers as `name@key=value[*]` does.
        let (stage, gather) = match stage.strip_suffix("[*]") {
            Some(stage) => (stage.trim(), true),
            None => (stage, gather),
        };
        if stage.is_empty() {
            return Err(StageRefError::NoStage(text.to_string()));
        }
        let mut select = Vec::new();
        for part in selector.into_iter().flat_map(|s| s.split(',')) {
            match part.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => select.push((k.trim().to_string(), v.trim().to_string())),
                _ => {
                    return Err(StageRefError::NotKeyValue {
                        text: text.to_string(),
                        part: part.to_string(),
                        stage: stage.to_string(),
                    })
                }
            }
        }
        Ok(StageRef {
            stage: stage.to_string(),
            gather,
            select,
        })
    }
}

impl fmt::Display for StageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.stage)?;
        if !self.select.is_empty() {
            let pairs: Vec<String> = self.select.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "@{}", pairs.join(","))?;
        }
        if self.gather {
            f.write_str("[*]")?;
        }
        Ok(())
    }
}

impl serde::Serialize for StageRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StageRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StageRef, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StageRef, StageRefError> {
        s.parse()
    }

    #[test]
    fn every_written_form_parses_and_prints_back() {
        let r = parse("sft@target=secure").unwrap();
        assert_eq!((r.stage.as_str(), r.gather), ("sft", false));
        assert_eq!(r.select, vec![("target".to_string(), "secure".to_string())]);
        assert_eq!(r.to_string(), "sft@target=secure");
        let r = parse(" steered@operator=negation, theta=0.5[*] ").unwrap();
        assert!(r.gather);
        assert_eq!(r.select.len(), 2);
        assert_eq!(r.to_string(), "steered@operator=negation,theta=0.5[*]");
        assert_eq!(
            parse("steered[*]@theta=0.5").unwrap(),
            parse("steered@theta=0.5[*]").unwrap()
        );
        assert_eq!(parse("train").unwrap().plain(), Some("train"));
        assert_eq!(parse("train[*]").unwrap().plain(), None);
    }

    #[test]
    fn a_malformed_selector_is_an_error_not_an_empty_value() {
        let err = parse("sft@target").unwrap_err();
        assert_eq!(
            err,
            StageRefError::NotKeyValue {
                text: "sft@target".into(),
                part: "target".into(),
                stage: "sft".into()
            }
        );
        assert!(err.to_string().contains("sft@key=value"), "{err}");
        assert!(matches!(parse("sft@=secure"), Err(StageRefError::NotKeyValue { .. })));
        assert!(matches!(parse("sft@a=b,"), Err(StageRefError::NotKeyValue { .. })));
        assert!(matches!(parse("@target=secure"), Err(StageRefError::NoStage(_))));
        assert!(matches!(parse("[*]"), Err(StageRefError::NoStage(_))));
    }
}
