//! The project folder: where `scripts/setup.sh` put the environments (`.venv`,
//! `.venv-oracles`) and the models (`.models`). `$SECVEC_HOME`, else the nearest folder above the
//! running executable that holds `.venv`, so `target/release/secvec` finds its own project from
//! any working directory, and a manifest anywhere can name the project's files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const HOME_ENV: &str = "SECVEC_HOME";

/// The project folder, if one can be found.
pub fn home() -> Option<PathBuf> {
    static HOME: OnceLock<Option<PathBuf>> = OnceLock::new();
    HOME.get_or_init(|| {
        if let Some(h) = std::env::var_os(HOME_ENV) {
            return Some(PathBuf::from(h));
        }
        let exe = std::env::current_exe().ok()?;
        exe.ancestors()
            .skip(1)
            .find(|d| d.join(".venv/bin/python").is_file())
            .map(Path::to_path_buf)
    })
    .clone()
}
