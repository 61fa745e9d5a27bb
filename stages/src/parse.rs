//! Facts about untrusted code (a model's drafts), computed by `secvec-parse` in the sandbox:
//! tree-sitter reads hostile input there, as every other tool that parses generated code does.
//! One parser answers a batch; when it dies on a program (memory, time), that program gets no
//! answer and a new parser takes the rest.

use std::path::PathBuf;
use std::time::Duration;

use secvec_artifacts::language::Language;
use secvec_slicing::service::{Answer, Request};

use crate::score::sandbox::{ExitReason, Limits, Sandbox, SandboxError, SCRATCH};
use crate::worker::sibling_binary;

/// The API calls of each program, in order; empty for a program the parser died on.
pub fn api_calls(programs: &[(Language, &str)]) -> anyhow::Result<Vec<Vec<String>>> {
    let exe = sibling_binary("secvec-parse")?;
    let sandbox = Sandbox::new(vec![exe.clone()], &[])?;
    let exe = exe.display().to_string();
    let limits = Limits {
        memory_bytes: 1 << 30,
        ..Limits::default()
    };
    let mut answers: Vec<Vec<String>> = Vec::with_capacity(programs.len());
    while answers.len() < programs.len() {
        let rest = &programs[answers.len()..];
        let mut input = Vec::new();
        for (language, source) in rest {
            serde_json::to_writer(
                &mut input,
                &Request {
                    language: *language,
                    source: source.to_string(),
                },
            )?;
            input.push(b'\n');
        }
        let batch = Limits {
            wall: Duration::from_secs(30 + rest.len() as u64),
            cpu_seconds: 30 + rest.len() as u64,
            ..limits.clone()
        };
        let out = sandbox.run(&[&exe], &Vec::<PathBuf>::new(), SCRATCH, Some(input), &batch)?;
        let before = answers.len();
        answers.extend(
            out.stdout_text()
                .lines()
                .map_while(|l| serde_json::from_str::<Answer>(l).ok())
                .take(rest.len())
                .map(|a| a.apis),
        );
        if answers.len() < programs.len() {
            if answers.len() == before && out.reason == ExitReason::Fail {
                return Err(SandboxError::Harness {
                    scenario: "(secvec-parse)".into(),
                    what: out.stderr_text(),
                }
                .into());
            }
            answers.push(Vec::new());
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandboxed_parser_finds_calls_and_survives_hostile_input() {
        if sibling_binary("secvec-parse").is_err() || Sandbox::new(Vec::new(), &[]).is_err() {
            eprintln!("notice: secvec-parse or bubblewrap missing; skipped");
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
}
