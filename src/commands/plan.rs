//! `secvec plan`: shows what `run` would do and why.

use super::open_if_present;
use super::Globals;
use super::Target;
use crate::exit::Exit;
use anyhow::Result;
use secvec_engine::explain::{explain, Action};

#[derive(clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: Target,
    /// One JSON line per stage.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PlanArgs, globals: &Globals) -> Result<Exit> {
    let PlanArgs { target, json } = args;
    let plan = target.composed.plan(&globals.registry, &globals.cache)?;
    let cache = open_if_present(&globals.cache)?;
    let rows = explain(&plan, cache.as_ref(), &target.only, &target.force)?;
    if json {
        for r in &rows {
            out!("{}", serde_json::to_string(r)?);
        }
    } else {
        let w = rows.iter().map(|r| r.stage.len()).max().unwrap_or(5).max(5);
        let k = rows.iter().map(|r| r.kind.len()).max().unwrap_or(4).max(4);
        out!("{:<w$}  {:<k$}  {:<6}  why", "stage", "kind", "action");
        for r in &rows {
            let why = r.reason.as_ref().map(ToString::to_string).unwrap_or_default();
            let line = format!("{:<w$}  {:<k$}  {:<6}  {why}", r.stage, r.kind, r.action);
            out!("{}", line.trim_end());
        }
        let stale = rows.iter().filter(|r| r.action == Action::Run).count();
        out!("{stale} of {} stages would run", rows.len());
    }
    Ok(Exit::Success)
}
