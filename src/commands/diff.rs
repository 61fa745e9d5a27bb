//! `secvec diff`: what differs between two runs.

use super::Globals;
use crate::exit::Exit;
use crate::runs;
use anyhow::Result;

#[derive(clap::Args)]
pub struct DiffArgs {
    /// A run id (or a unique prefix), `latest` or `latest~N`.
    pub a: String,
    /// The run to compare it with (default: the latest).
    #[arg(default_value = "latest")]
    pub b: String,
    /// Both lists as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DiffArgs, globals: &Globals) -> Result<Exit> {
    let DiffArgs { a, b, json } = args;
    let records = runs::list(&globals.cache)?;
    let (x, y) = (&records[runs::find(&records, &a)?], &records[runs::find(&records, &b)?]);
    let (params, metrics) = runs::diff(x, y);
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"a": x.id, "b": y.id, "params": params, "metrics": metrics})
            )?
        );
        return Ok(Exit::Success);
    }
    out!("a: {}\nb: {}", x.id, y.id);
    for (title, changes) in [("params", &params), ("metrics", &metrics)] {
        out!("\n{title}:");
        if changes.is_empty() {
            out!("  (none differ)");
        }
        for c in changes {
            let moved = match (c.a.as_f64(), c.b.as_f64()) {
                (Some(p), Some(q)) if title == "metrics" => format!("  ({:+.4})", q - p),
                _ => String::new(),
            };
            out!("  {}: {} → {}{moved}", c.what, c.a, c.b);
        }
    }
    Ok(Exit::Success)
}
