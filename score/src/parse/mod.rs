//! Facts about untrusted code (a model's drafts and completions), computed by `secvec-parse` in
//! the sandbox: tree-sitter reads hostile input there, as every other tool that parses generated
//! code does. One parser answers a batch; when it dies on a program (memory, time), that program
//! gets no answer and a new parser takes the rest.

use std::path::PathBuf;
use std::time::Duration;

use secvec_artifacts::language::Language;
use secvec_stage::worker::sibling_binary;
use service::{Answer, Question, Request};

use crate::oracle::c_patterns::PatternFinding;
use crate::sandbox::{ExitReason, Limits, RunOutcome, Sandbox, SandboxError, SCRATCH};

pub mod service;

/// The API calls of each program, in order; empty for a program the parser died on.
pub fn api_calls(programs: &[(Language, &str)]) -> anyhow::Result<Vec<Vec<String>>> {
    Ok(ask(programs, Question::Apis)?
        .into_iter()
        .map(|a| match a {
            Some(Answer::Apis(apis)) => apis,
            _ => Vec::new(),
        })
        .collect())
}

/// The pattern checks' findings in each C program, in order; `None` for a program the parser
/// died on.
pub fn c_patterns(programs: &[&str]) -> anyhow::Result<Vec<Option<Vec<PatternFinding>>>> {
    let programs: Vec<(Language, &str)> = programs.iter().map(|p| (Language::C, *p)).collect();
    Ok(ask(&programs, Question::CPatterns)?
        .into_iter()
        .map(|a| match a {
            Some(Answer::Patterns(found)) => Some(found),
            _ => None,
        })
        .collect())
}

/// One answer per program, in order; `None` where the parser died on it.
fn ask(programs: &[(Language, &str)], question: Question) -> anyhow::Result<Vec<Option<Answer>>> {
    // Scoring asks for every stage, most of whose programs may need no parse (Python only).
    if programs.is_empty() {
        return Ok(Vec::new());
    }
    let exe = sibling_binary("secvec-parse")?;
    let sandbox = Sandbox::new(vec![exe.clone()], &[])?;
    let exe = exe.display().to_string();
    let run = |batch: &[(Language, &str)]| -> anyhow::Result<RunOutcome> {
        let mut input = Vec::new();
        for (language, source) in batch {
            serde_json::to_writer(
                &mut input,
                &Request {
                    language: *language,
                    source: source.to_string(),
                    question,
                },
            )?;
            input.push(b'\n');
        }
        let limits = Limits {
            memory_bytes: 1 << 30,
            wall: Duration::from_secs(30 + batch.len() as u64),
            cpu_seconds: 30 + batch.len() as u64,
            ..Limits::default()
        };
        Ok(sandbox.run(&[&exe], &Vec::<PathBuf>::new(), SCRATCH, Some(input), &limits)?)
    };
    let answered = |out: &RunOutcome, n: usize| -> Vec<Answer> {
        out.stdout_text()
            .lines()
            .map_while(|l| serde_json::from_str::<Answer>(l).ok())
            .take(n)
            .collect()
    };
    let mut answers: Vec<Option<Answer>> = Vec::with_capacity(programs.len());
    while answers.len() < programs.len() {
        let rest = &programs[answers.len()..];
        let out = run(rest)?;
        let got = answered(&out, rest.len());
        let none = got.is_empty();
        answers.extend(got.into_iter().map(Some));
        if answers.len() < programs.len() {
            // It ended before answering the next program: that program's doing, unless the
            // parser cannot answer a harmless program either.
            if none && out.reason == ExitReason::Fail {
                let probe = run(&[(Language::C, "int main(void) { return 0; }\n")])?;
                if answered(&probe, 1).is_empty() {
                    return Err(SandboxError::Harness {
                        scenario: "(secvec-parse)".into(),
                        what: out.stderr_text(),
                    }
                    .into());
                }
            }
            answers.push(None);
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn available() -> bool {
        let ok = sibling_binary("secvec-parse").is_ok() && Sandbox::new(Vec::new(), &[]).is_ok();
        if !ok {
            eprintln!("notice: secvec-parse or bubblewrap missing; skipped");
        }
        ok
    }

    #[test]
    fn the_sandboxed_parser_finds_calls_and_survives_hostile_input() {
        if !available() {
            return;
        }
        let deep = format!("x = {}1{}\n", "(".repeat(200_000), ")".repeat(200_000));
        let programs = [
            (
                Language::Python,
                "import yaml\ndef f(p):\n    return yaml.load(open(p))\n",
            ),
            (Language::Python, deep.as_str()),
            (Language::C, "int main(void) { char b[8]; strcpy(b, getenv(\"X\")); }\n"),
        ];
        let got = api_calls(&programs).unwrap();
        assert_eq!(got[0], ["yaml.load", "open"]);
        assert_eq!(got[2], ["strcpy", "getenv"]);
    }

    #[test]
    fn pattern_checks_run_in_the_sandbox_and_a_program_that_kills_them_gets_no_answer() {
        if !available() {
            return;
        }
        let deep = format!(
            "int main(void) {{ int x = {}1{}; return x; }}\n",
            "(".repeat(500_000),
            ")".repeat(500_000)
        );
        let copy = "#include <string.h>\nint main(int argc, char *argv[]) {\n    char b[8];\n    strcpy(b, argv[1]);\n    return 0;\n}\n";
        let got = c_patterns(&[copy, deep.as_str(), copy]).unwrap();
        let rules = |f: &Option<Vec<PatternFinding>>| -> Vec<(String, usize)> {
            f.iter().flatten().map(|f| (f.rule.clone(), f.line)).collect()
        };
        assert_eq!(rules(&got[0]), [("unbounded-copy".to_string(), 4)]);
        assert_eq!(got[1], None, "the nested program should exhaust the parser's limits");
        assert_eq!(rules(&got[2]), [("unbounded-copy".to_string(), 4)]);
    }
}
