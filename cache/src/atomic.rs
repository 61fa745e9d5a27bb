//! Files written whole or not at all.

use std::path::Path;

/// Writes `bytes` to `path` by rename from a file beside it (made with its folder if need be),
/// so a reader sees the old file, the new one, or none, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}
