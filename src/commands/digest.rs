//! `secvec digest`: the content digest of a file or folder.

use crate::exit::Exit;
use anyhow::Context;
use anyhow::Result;
use secvec_cache::Digest;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DigestArgs {
    /// A file or directory.
    pub path: PathBuf,
}

pub fn run(args: DigestArgs) -> Result<Exit> {
    let DigestArgs { path } = args;
    let d: Digest = secvec_cache::hash_path(&path).with_context(|| format!("hashing {}", path.display()))?;
    out!("{d}  {}", path.display());
    Ok(Exit::Success)
}
