//! `secvec dag`: prints a manifest's graph of stages.

use super::Composed;
use super::Globals;
use crate::dag;
use crate::exit::Exit;
use anyhow::Result;

#[derive(clap::Args)]
pub struct DagArgs {
    #[command(flatten)]
    pub composed: Composed,
    /// How to print the graph.
    #[arg(long, value_enum, default_value = "text")]
    pub format: dag::Format,
}

pub fn run(args: DagArgs, globals: &Globals) -> Result<Exit> {
    let DagArgs { composed, format } = args;
    let plan = composed.plan(&globals.registry, &globals.cache)?;
    out!("{}", dag::render(&plan, format).trim_end());
    Ok(Exit::Success)
}
