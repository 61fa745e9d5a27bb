//! A named file inside a stage's input folder, as params name it (`prompts_file`, `pairs_file`).

use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("`{name}` must name a file inside the input {input} (a relative path without `..`)")]
pub struct OutsideInput {
    pub name: String,
    pub input: PathBuf,
}

/// `name` inside `input` when the input is a folder, else the input file itself. A name that
/// could leave the folder (absolute, or with `..`) is refused: params come from the manifest.
pub fn input_file(input: &Path, name: &str) -> Result<PathBuf, OutsideInput> {
    if !input.is_dir() {
        return Ok(input.to_path_buf());
    }
    let inside = !name.is_empty() && Path::new(name).components().all(|c| matches!(c, Component::Normal(_)));
    match inside {
        true => Ok(input.join(name)),
        false => Err(OutsideInput {
            name: name.to_string(),
            input: input.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_that_leave_the_input_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            super::input_file(dir.path(), "val.jsonl").unwrap(),
            dir.path().join("val.jsonl")
        );
        assert_eq!(
            super::input_file(dir.path(), "a/b.jsonl").unwrap(),
            dir.path().join("a/b.jsonl")
        );
        for bad in ["../x.jsonl", "/etc/passwd", "a/../../b", ""] {
            let err = super::input_file(dir.path(), bad).unwrap_err().to_string();
            assert!(err.contains("must name a file inside the input"), "{bad}: {err}");
        }
    }
}
