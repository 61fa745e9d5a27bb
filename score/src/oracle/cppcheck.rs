//! cppcheck (Debian's), on a few programs at a time, in the one preprocessor configuration gcc
//! compiles them in (`-std=c99`, as the functional tests do): by default it would try up to 12
//! of its own, in none of which a program's `#ifndef __STRICT_ANSI__` or `#ifndef __linux__`
//! branches are what runs. Inline suppressions are read only with `--inline-suppr`, which it
//! never gets.

use std::path::{Path, PathBuf};

use super::{Checked, Finding, OracleError, ToolRunner};

pub fn run(
    runner: &ToolRunner,
    cppcheck: &str,
    cwd: &Path,
    configuration: &Path,
    files: &[PathBuf],
) -> Result<Checked, OracleError> {
    let include = format!("--include={}", configuration.display());
    let args: Vec<String> = [
        "-q",
        "--enable=warning,portability",
        // cppcheck expands `\t` in templates itself.
        "--template={file}\\t{line}\\t{id}\\t{message}",
        // gcc's macros, and a -D, which makes cppcheck check that one configuration only.
        &include,
        "-D__STDC__",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(files.iter().map(|f| f.display().to_string()))
    .collect();
    // cppcheck exits 0 whatever it finds (no --error-exitcode): any other status is its failure.
    Ok(Checked::found(parse(&runner.stderr(
        "cppcheck",
        cppcheck,
        &args,
        cwd,
        &[0],
    )?)))
}

/// Writes the macros `gcc -std=c99` predefines to a header in `cwd` and returns its path.
pub fn configuration(runner: &ToolRunner, gcc: &str, cwd: &Path) -> Result<PathBuf, OracleError> {
    let args = ["-std=c99", "-dM", "-E", "-x", "c", "/dev/null"].map(String::from);
    let macros = runner.output("gcc", gcc, &args, cwd, &[], &[0])?;
    let path = cwd.join("gcc-c99-macros.h");
    std::fs::write(&path, macros).map_err(|source| OracleError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn parse(text: &str) -> Vec<(PathBuf, Finding)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, '\t');
            let (file, line, id, message) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let finding = Finding {
                oracle: "cppcheck".into(),
                rule: id.to_string(),
                line: line.parse().ok()?,
                message: message.to_string(),
            };
            Some((PathBuf::from(file), finding))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn template_lines_are_findings_and_other_output_is_not() {
        let text = "/t/p0.c\t8\tarrayIndexOutOfBounds\tArray 'seq[3]' accessed at index 3, which is out of bounds.\n\
                    Checking /t/p1.c ...\n";
        let found = super::parse(text);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].1.rule.as_str(), found[0].1.line),
            ("arrayIndexOutOfBounds", 8)
        );
    }
}
