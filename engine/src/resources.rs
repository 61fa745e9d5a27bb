//! A manifest stage's `resources:` block, which overrides what its kind declares
//! ([`Resources`]), and the units it is written in.

use schemars::JsonSchema;
use secvec_stage::Resources;
use serde::{Deserialize, Serialize};

/// A manifest stage's `resources:` block: any field left out keeps what the kind declares.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory: `512M`, `16G` (MiB when a bare number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// A GPU model, as the cluster names it in `--gres=gpu:TYPE:N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<String>,
    /// Wall time: `90m`, `2h`, `1h30m`, `45s`, or Slurm's `H:MM:SS` / `D-HH:MM:SS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<WallTime>,
}

impl ResourceSpec {
    /// `declared` with the fields this block names replaced.
    pub fn apply(&self, mut declared: Resources) -> Resources {
        if let Some(c) = self.cpus {
            declared.cpu = c;
        }
        if let Some(g) = self.gpus {
            declared.gpu = g;
        }
        if let Some(t) = &self.gpu_type {
            declared.gpu_type = Some(t.clone());
        }
        if let Some(m) = &self.memory {
            declared.memory_mb = Some(m.0);
        }
        if let Some(t) = &self.time {
            declared.time_s = Some(t.0);
        }
        declared
    }
}

/// A memory size in MiB, written with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory(pub u64);

/// A wall time in seconds, written with units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallTime(pub u64);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("`{0}` is not a memory size; write it as 512M, 16G or 1.5T")]
    Memory(String),
    #[error("`{0}` is not a wall time; write it as 90m, 2h, 1h30m, 45s or H:MM:SS")]
    Time(String),
}

impl std::str::FromStr for Memory {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<Memory, ResourceError> {
        let bad = || ResourceError::Memory(s.to_string());
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit = unit.trim().trim_end_matches(['B', 'b']).trim_end_matches('i');
        let mib = match unit.to_ascii_uppercase().as_str() {
            "K" => n / 1024.0,
            "" | "M" => n,
            "G" => n * 1024.0,
            "T" => n * 1024.0 * 1024.0,
            _ => return Err(bad()),
        };
        if !(mib >= 1.0 && mib.is_finite()) {
            return Err(bad());
        }
        Ok(Memory(mib.ceil() as u64))
    }
}

impl std::str::FromStr for WallTime {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<WallTime, ResourceError> {
        let bad = || ResourceError::Time(s.to_string());
        let t = s.trim();
        let seconds = if t.contains(':') {
            // Slurm's [D-]H:MM:SS or MM:SS.
            let (days, clock) = match t.split_once('-') {
                Some((d, c)) => (d.parse::<u64>().map_err(|_| bad())?, c),
                None => (0, t),
            };
            let parts: Vec<u64> = clock
                .split(':')
                .map(|p| p.parse::<u64>().map_err(|_| bad()))
                .collect::<Result<_, _>>()?;
            let (h, m, s) = match parts.as_slice() {
                [m, s] => (0, *m, *s),
                [h, m, s] => (*h, *m, *s),
                _ => return Err(bad()),
            };
            let clock = h
                .checked_mul(3600)
                .and_then(|t| t.checked_add(m.checked_mul(60)?))
                .and_then(|t| t.checked_add(s))
                .ok_or_else(bad)?;
            days.checked_mul(86400)
                .and_then(|d| d.checked_add(clock))
                .ok_or_else(bad)?
        } else {
            let mut total = 0u64;
            let mut num = String::new();
            for c in t.chars().filter(|c| !c.is_whitespace()) {
                match c {
                    '0'..='9' => num.push(c),
                    'd' | 'h' | 'm' | 's' => {
                        let n: u64 = num.parse().map_err(|_| bad())?;
                        num.clear();
                        let unit = match c {
                            'd' => 86400,
                            'h' => 3600,
                            'm' => 60,
                            _ => 1,
                        };
                        total = n.checked_mul(unit).and_then(|t| t.checked_add(total)).ok_or_else(bad)?;
                    }
                    _ => return Err(bad()),
                }
            }
            if !num.is_empty() {
                // A bare number is seconds.
                total = total
                    .checked_add(num.parse::<u64>().map_err(|_| bad())?)
                    .ok_or_else(bad)?;
            }
            total
        };
        if seconds == 0 {
            return Err(bad());
        }
        Ok(WallTime(seconds))
    }
}

/// Deserialises a value written as text with units or as a bare number, and describes both
/// forms in the schema.
macro_rules! text_or_number {
    ($ty:ident, $expected:literal, $pattern:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    N(u64),
                    S(String),
                }
                match Raw::deserialize(d).map_err(|_| serde::de::Error::custom($expected))? {
                    Raw::N(n) => format!("{n}").parse().map_err(serde::de::Error::custom),
                    Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
                }
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "description": $expected,
                    "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": $pattern}]
                })
            }
        }
    };
}

text_or_number!(
    Memory,
    "a memory size such as 512M or 16G (MiB when a bare number)",
    r"^\s*[0-9]+(\.[0-9]+)?\s*([KkMmGgTt]i?[Bb]?)?\s*$"
);
text_or_number!(
    WallTime,
    "a wall time such as 90m, 2h, 1h30m or 1:30:00 (seconds when a bare number)",
    r"^\s*([0-9]+-)?[0-9dhms: ]+$"
);

impl Serialize for Memory {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}M", self.0))
    }
}

impl Serialize for WallTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_time_parse_as_schedulers_write_them() {
        let mem = |s: &str| s.parse::<Memory>().map(|m| m.0);
        assert_eq!(mem("512M"), Ok(512));
        assert_eq!(mem("16G"), Ok(16384));
        assert_eq!(mem("1.5GiB"), Ok(1536));
        assert_eq!(mem("2048"), Ok(2048));
        assert!(mem("lots").is_err());
        assert!(mem("0").is_err());
        let time = |s: &str| s.parse::<WallTime>().map(|t| t.0);
        assert_eq!(time("90m"), Ok(5400));
        assert_eq!(time("1h30m"), Ok(5400));
        assert_eq!(time("1:30:00"), Ok(5400));
        assert_eq!(time("1-00:00:00"), Ok(86400));
        assert_eq!(time("45s"), Ok(45));
        assert!(time("soon").is_err());
        assert!(time("1:2:3:4").is_err());
        assert!(time("99999999999999999d").is_err());
        assert!(time("18446744073709551615:0:0").is_err());
    }

    #[test]
    fn a_manifest_overrides_only_the_fields_it_names() {
        let spec: ResourceSpec = serde_yaml::from_str("{memory: 8G, time: 2h}").unwrap();
        let r = spec.apply(Resources::gpus(1));
        assert_eq!(r.gpu, 1);
        assert_eq!(r.memory_mb, Some(8192));
        assert_eq!(r.time_s, Some(7200));
        let err = serde_yaml::from_str::<ResourceSpec>("{memory: lots}").unwrap_err();
        assert!(err.to_string().contains("write it as 512M"), "{err}");
    }
}
