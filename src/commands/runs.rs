//! `secvec runs`: lists the recorded runs.

use super::Globals;
use crate::exit::Exit;
use crate::runs;
use anyhow::Result;
use secvec_engine::progress::Status;

#[derive(clap::Args)]
pub struct RunsArgs {
    /// The records themselves, one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RunsArgs, globals: &Globals) -> Result<Exit> {
    let RunsArgs { json } = args;
    for r in runs::list(&globals.cache)? {
        if json {
            out!("{}", serde_json::to_string(&r)?);
            continue;
        }
        let count = |s: Status| r.stages.values().filter(|x| x.status == s).count();
        let mut asked = vec![r.manifest.display().to_string()];
        asked.extend(r.overlays.iter().map(|o| format!("-o {}", o.display())));
        asked.extend(r.sets.iter().map(|s| format!("--set {s}")));
        out!(
            "{}  {:<11}  {:>4} ran {:>4} cached {:>3} failed  {:>8.1}s  {}",
            r.id,
            format!("{:?}", r.exit).to_lowercase(),
            count(Status::Ran),
            count(Status::Cached),
            count(Status::Failed),
            r.seconds,
            asked.join(" ")
        );
    }
    Ok(Exit::Success)
}
