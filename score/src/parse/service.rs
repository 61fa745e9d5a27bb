//! What `secvec-parse` answers: the binary that parses untrusted code (generated programs) in
//! the sandbox, so tree-sitter never reads them in a process that holds the cache. One
//! [`Request`] per stdin line, one [`Answer`] per stdout line, in order.

use std::io::{BufRead, Write};

use secvec_artifacts::language::Language;
use serde::{Deserialize, Serialize};

use crate::oracle::c_patterns::{self, PatternFinding};

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub language: Language,
    pub source: String,
    pub question: Question,
}

/// What to find in the source.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Question {
    /// The APIs the code calls ([`secvec_slicing::api_calls`]).
    Apis,
    /// The pattern checks' findings ([`c_patterns::check`]; C only).
    CPatterns,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Apis(Vec<String>),
    Patterns(Vec<PatternFinding>),
}

/// Answers every request line of `input` on `output`; a line that is not a request is an error.
pub fn serve(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    for line in input.lines() {
        let request: Request = serde_json::from_str(&line?).map_err(std::io::Error::other)?;
        let answer = match request.question {
            Question::Apis => Answer::Apis(secvec_slicing::api_calls(request.language, &request.source)),
            Question::CPatterns => Answer::Patterns(c_patterns::check(&request.source)),
        };
        serde_json::to_writer(&mut output, &answer)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}
