use std::fmt;
use std::path::{Path, PathBuf};

/// Where a manifest value came from: a line of a YAML file, or a command-line argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    File { file: PathBuf, line: usize, col: usize },
    Arg(String),
}

impl Location {
    pub fn file(file: &Path, line: usize, col: usize) -> Self {
        Location::File {
            file: file.to_path_buf(),
            line,
            col,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { file, line, col } => write!(f, "{}:{line}:{col}", file.display()),
            Location::Arg(arg) => write!(f, "argument `{arg}`"),
        }
    }
}

/// A manifest that cannot be run: what is wrong, where, and (in the message) what to do.
#[derive(Debug, thiserror::Error)]
pub struct ManifestError {
    pub location: Option<Location>,
    pub message: String,
}

impl ManifestError {
    pub fn new(location: Option<Location>, message: impl Into<String>) -> Self {
        ManifestError {
            location,
            message: message.into(),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) => write!(f, "{loc}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Suggests the closest known name, for "did you mean" hints.
pub fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    known
        .into_iter()
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}
