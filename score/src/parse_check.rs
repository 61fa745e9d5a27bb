//! Which programs parse: Python's `ast` and gcc's syntax check, run in the sandbox (a program can
//! make the parser read `/dev/zero`, or exhaust memory or time). One checker answers for a
//! batch; when it dies on a program, that program does not parse and a new checker takes the
//! rest.

use std::path::PathBuf;
use std::time::Duration;

use super::sandbox::{shared_dir, ExitReason, Limits, Sandbox, SandboxError, SCRATCH};

const SCRIPT: &str = include_str!("parse_check.py");

/// One answer per program, in order: whether it parses (`language`: `py`, `c` or `cpp`).
pub fn parses(
    sandbox: &Sandbox,
    python: &str,
    programs: &[(&str, &str)],
    limits: &Limits,
) -> Result<Vec<bool>, SandboxError> {
    let dir = shared_dir().map_err(SandboxError::Spawn)?;
    let script = dir.path().join("parse_check.py");
    std::fs::write(&script, SCRIPT).map_err(SandboxError::Spawn)?;
    let dirs: Vec<PathBuf> = vec![dir.path().into()];
    let script = script.display().to_string();
    let mut answers: Vec<bool> = Vec::with_capacity(programs.len());
    while answers.len() < programs.len() {
        let rest = &programs[answers.len()..];
        let input: Vec<u8> = rest
            .iter()
            .flat_map(|(language, program)| {
                let mut line = serde_json::to_vec(&serde_json::json!({"language": language, "program": program}))
                    .expect("serialisable");
                line.push(b'\n');
                line
            })
            .collect();
        let batch = Limits {
            wall: Duration::from_secs(60 + 25 * rest.len() as u64),
            cpu_seconds: 60 + 25 * rest.len() as u64,
            ..limits.clone()
        };
        let out = sandbox.run(&[python, &script], &dirs, SCRATCH, Some(input), &batch)?;
        let before = answers.len();
        answers.extend(
            out.stdout_text()
                .lines()
                .map_while(|l| serde_json::from_str::<bool>(l).ok())
                .take(rest.len()),
        );
        if answers.len() < programs.len() {
            // Nothing a program holds makes the checker itself fail: it cannot start.
            if answers.len() == before && out.reason == ExitReason::Fail {
                return Err(SandboxError::Harness {
                    scenario: "(parse check)".into(),
                    what: out.stderr_text(),
                });
            }
            // The checker died on the next program (memory, time): it does not parse.
            answers.push(false);
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_programs_do_not_parse_and_the_others_are_still_checked() {
        let Some((sandbox, python)) = crate::sandbox::tests::python() else {
            return;
        };
        let programs = [
            ("py", "def f(x):\n    return x\n"),
            ("py", "def f(:\n"),
            ("c", "#include \"/dev/zero\"\nint main(void) { return 0; }\n"),
            ("c", "int main(void) { return 0; }\n"),
            ("py", &*format!("x = {}1{}\n", "(".repeat(100_000), ")".repeat(100_000))),
            ("c", "#include \"/etc/shadow\"\nint main(void) { return 0; }\n"),
            ("c", "int main(void) { return 0 }\n"),
            (
                "cpp",
                "#include <vector>\nint main() { std::vector<int> v; return v.size(); }\n",
            ),
        ];
        let limits = Limits {
            memory_bytes: 512 << 20,
            ..Limits::default()
        };
        let got = parses(&sandbox, &python, &programs, &limits).unwrap();
        assert_eq!(got, [true, false, false, true, false, false, false, true]);
    }
}
