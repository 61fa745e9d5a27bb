use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Programming language of a pair, from its file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    C,
    Cpp,
    Javascript,
    Go,
    Ruby,
    Java,
}

impl Language {
    pub fn from_file_name(name: &str) -> Option<Language> {
        let ext = name.rsplit_once('.')?.1;
        Some(match ext {
            "py" => Language::Python,
            "c" | "h" | "C" => Language::C,
            "cc" | "cpp" | "cxx" | "hpp" | "hh" => Language::Cpp,
            "js" | "jsx" => Language::Javascript,
            "go" => Language::Go,
            "rb" => Language::Ruby,
            "java" => Language::Java,
            _ => return None,
        })
    }

    /// The identifier used in files and params.
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::Javascript => "javascript",
            Language::Go => "go",
            Language::Ruby => "ruby",
            Language::Java => "java",
        }
    }

    /// The name used in prompts.
    pub fn display(self) -> &'static str {
        match self {
            Language::Python => "Python",
            Language::C => "C",
            Language::Cpp => "C++",
            Language::Javascript => "JavaScript",
            Language::Go => "Go",
            Language::Ruby => "Ruby",
            Language::Java => "Java",
        }
    }
}
