//! Reading YAML documents together with the line of every value, so later errors can point at it.

use std::collections::HashMap;
use std::path::Path;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::error::{Location, ManifestError};

/// Maps a value path (`stages.report.params.title`, `stages.x.matrix.theta[2]`) to where it was written.
#[derive(Clone, Debug, Default)]
pub struct LineIndex {
    locations: HashMap<String, Location>,
}

impl LineIndex {
    /// The location of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<Location> {
        let mut p = path;
        loop {
            if let Some(loc) = self.locations.get(p) {
                return Some(loc.clone());
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    pub fn insert(&mut self, path: String, location: Location) {
        self.locations.insert(path, location);
    }

    /// Entries of `other` win: an overlay's lines replace the base manifest's.
    pub fn overlay(&mut self, other: LineIndex) {
        self.locations.extend(other.locations);
    }
}

/// Joins a parent path and a mapping key the way `serde_path_to_error` prints paths.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub struct YamlDocument {
    pub value: serde_yaml::Value,
    pub lines: LineIndex,
}

pub fn read_yaml(file: &Path) -> Result<YamlDocument, ManifestError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ManifestError::new(None, format!("cannot read {}: {e}", file.display())))?;
    parse_yaml(file, &text)
}

pub fn parse_yaml(file: &Path, text: &str) -> Result<YamlDocument, ManifestError> {
    let mut recorder = Recorder {
        file,
        stack: Vec::new(),
        lines: LineIndex::default(),
        duplicate: None,
    };
    // A syntax error stops the recorder early; serde_yaml below reports it with its location.
    let _ = Parser::new_from_str(text).load(&mut recorder, false);
    if let Some((key, at, first)) = recorder.duplicate {
        return Err(ManifestError::new(
            Some(at),
            format!("duplicate key `{key}` (first written at line {first}); names must be unique"),
        ));
    }
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let loc = e.location().map(|l| Location::file(file, l.line(), l.column()));
        let msg = e.to_string();
        // serde_yaml appends " at line N column M"; the location already says so.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        ManifestError::new(loc, format!("invalid YAML: {msg}"))
    })?;
    Ok(YamlDocument {
        value,
        lines: recorder.lines,
    })
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        seen: HashMap<String, usize>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

struct Recorder<'a> {
    file: &'a Path,
    stack: Vec<Frame>,
    lines: LineIndex,
    /// The first repeated mapping key: its path, where it repeats, and the line it was first on.
    duplicate: Option<(String, Location, usize)>,
}

impl Recorder<'_> {
    /// The path a value beginning now takes, recording its location; `None` when the event is a
    /// mapping key.
    fn begin_value(&mut self, mark: Marker, scalar: Option<&str>) -> Option<String> {
        let loc = Location::file(self.file, mark.line(), mark.col() + 1);
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key, seen }) => match key.take() {
                None => {
                    let k = scalar.unwrap_or_default().to_string();
                    let full = join(path, &k);
                    if let Some(first) = seen.insert(k.clone(), mark.line()) {
                        self.duplicate.get_or_insert((full.clone(), loc.clone(), first));
                    }
                    self.lines.insert(full, loc);
                    *key = Some(k);
                    None
                }
                Some(k) => {
                    let full = join(path, &k);
                    Some(full)
                }
            },
            Some(Frame::Seq { path, index }) => {
                let full = format!("{path}[{index}]");
                *index += 1;
                self.lines.insert(full.clone(), loc);
                Some(full)
            }
        }
    }
}

impl MarkedEventReceiver for Recorder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                self.begin_value(mark, Some(&value));
            }
            Event::Alias(_) => {
                self.begin_value(mark, Some(""));
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.begin_value(mark, None) {
                    self.stack.push(Frame::Map {
                        path,
                        key: None,
                        seen: HashMap::new(),
                    });
                }
            }
            Event::SequenceStart(..) => {
                if let Some(path) = self.begin_value(mark, None) {
                    self.stack.push(Frame::Seq { path, index: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_lines_of_keys_and_items() {
        let text = "name: x\nstages:\n  a:\n    kind: pair\n    matrix:\n      theta: [1, 2]\n  b:\n    inputs:\n      r:\n        - a\n        - {path: z}\n";
        let doc = parse_yaml(Path::new("m.yaml"), text).unwrap();
        let line = |p: &str| match doc.lines.find(p) {
            Some(Location::File { line, .. }) => line,
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(line("name"), 1);
        assert_eq!(line("stages.a.kind"), 4);
        assert_eq!(line("stages.a.matrix.theta[1]"), 6);
        assert_eq!(line("stages.b.inputs.r[1].path"), 11);
        assert_eq!(line("stages.b.inputs.r[0]"), 10);
        assert_eq!(line("stages.a.params.missing"), 3, "falls back to the nearest ancestor");
    }

    #[test]
    fn duplicate_keys_point_at_the_repeat() {
        let err = parse_yaml(Path::new("m.yaml"), "stages:\n  a: 1\n  b: 2\n  a: 3\n")
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "m.yaml:4:3: duplicate key `stages.a` (first written at line 2); names must be unique"
        );
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let err = parse_yaml(Path::new("m.yaml"), "name: x\nstages: [\n").err().unwrap();
        assert!(matches!(err.location, Some(Location::File { .. })), "{err}");
    }
}
