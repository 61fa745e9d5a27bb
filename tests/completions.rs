//! `secvec completions`: the bash script completes commands and options in a real bash, and
//! every shell's script knows every command.

use std::process::Command;

fn script(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_secvec"))
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// What bash offers after typing `words` (the last one being completed).
fn bash_completes(words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secvec.bash");
    std::fs::write(&path, script("bash")).unwrap();
    let line = words.join(" ");
    let program = format!(
        "source '{}'; COMP_WORDS=({line}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
         _secvec secvec '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = Command::new("bash").args(["-c", &program]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_commands_and_their_options() {
    let commands = bash_completes(&["secvec", "ru"]);
    for c in ["run", "runs", "run-stage"] {
        assert!(commands.contains(&c.to_string()), "{c} not in {commands:?}");
    }
    assert!(!commands.contains(&"serve".to_string()), "{commands:?}");
    let options = bash_completes(&["secvec", "serve", "--batch"]);
    assert_eq!(options, ["--batch-size"]);
    let shells = bash_completes(&["secvec", "completions", "f"]);
    assert_eq!(shells, ["fish"]);
}

#[test]
fn every_shells_script_names_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let text = script(shell);
        for command in ["run", "compare", "serve", "completions", "kv-budget-mib"] {
            assert!(text.contains(command), "{shell}: no {command}");
        }
    }
}
