//! Helpers shared by the model crate's tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The project's Python with PEFT and transformers, or a notice (the caller skips).
pub fn peft_python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import peft, transformers"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("notice: no .venv with peft (run scripts/setup.sh); skipping the comparison with PEFT");
    }
    ok.then_some(py)
}

/// The project's Python with sentence-transformers, or a notice (the caller skips).
pub fn sentence_transformers_python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import sentence_transformers"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("notice: no .venv with sentence-transformers (run scripts/setup.sh); skipping the comparison");
    }
    ok.then_some(py)
}
