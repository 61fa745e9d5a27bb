use std::fmt;
use std::path::{Path, PathBuf};

pub use secvec_stage::did_you_mean;

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

/// serde's message about a value, in the words of someone writing YAML: `invalid type: string
/// "abc", expected usize` becomes `got the text "abc", expected a whole number (0 or more)`.
pub fn plain_words(message: &str) -> String {
    const WORDS: [(&str, &str); 24] = [
        ("invalid type: string ", "got the text "),
        ("invalid type: integer ", "got the number "),
        ("invalid type: floating point ", "got the number "),
        ("invalid type: boolean ", "got "),
        ("invalid type: sequence", "got a list"),
        ("invalid type: map", "got a mapping"),
        ("invalid type: unit value", "got nothing (null)"),
        ("invalid value: integer ", "the number "),
        ("invalid value: floating point ", "the number "),
        ("invalid value: string ", "the text "),
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u16", "expected a whole number (0 or more)"),
        ("expected u8", "expected a whole number (0 or more)"),
        ("expected isize", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a string", "expected text"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a mapping"),
        ("expected a borrowed string", "expected text"),
    ];
    let mut plain = WORDS
        .iter()
        .fold(message.to_string(), |m, (serde, words)| m.replace(serde, words));
    // `expected struct GenerateParams`: the type's name means nothing in a manifest.
    if let Some(at) = plain.find("expected struct ") {
        let end = plain[at + 16..]
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(plain.len(), |e| at + 16 + e);
        plain.replace_range(at..end, "expected a mapping");
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::plain_words;

    #[test]
    fn serde_jargon_becomes_words() {
        assert_eq!(
            plain_words("invalid type: string \"abc\", expected usize"),
            "got the text \"abc\", expected a whole number (0 or more)"
        );
        assert_eq!(
            plain_words("invalid type: sequence, expected struct GenerateParams"),
            "got a list, expected a mapping"
        );
        assert_eq!(
            plain_words("invalid value: integer `-1`, expected u32"),
            "the number `-1`, expected a whole number (0 or more)"
        );
        assert_eq!(plain_words("unknown field `n`"), "unknown field `n`");
    }
}
