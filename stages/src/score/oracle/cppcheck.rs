//! cppcheck (Debian's), on one program at a time; inline suppressions are read only with
//! `--inline-suppr`, which it never gets.

use std::path::{Path, PathBuf};

use super::{Checked, Finding, OracleError, ToolRunner};

pub fn run(
    runner: &ToolRunner,
    cppcheck: &str,
    cwd: &Path,
    file: &Path,
) -> Result<Checked, OracleError> {
    let args: Vec<String> = [
        "-q",
        "--enable=warning,portability",
        // cppcheck expands `\t` in templates itself.
        "--template={file}\\t{line}\\t{id}\\t{message}",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([file.display().to_string()])
    .collect();
    // cppcheck exits 0 whatever it finds (no --error-exitcode): any other status is its failure.
    Ok(Checked::found(parse(&runner.stderr("cppcheck", cppcheck, &args, cwd, &[0])?)))
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
