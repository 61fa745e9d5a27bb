//! `secvec kinds`: the stage kinds, their inputs and params.

use super::Globals;
use crate::exit::Exit;
use anyhow::Context;
use anyhow::Result;

#[derive(clap::Args)]
pub struct KindsArgs {
    /// A kind to describe in full (`generate`, `score`, …).
    pub kind: Option<String>,
}

pub fn run(args: KindsArgs, globals: &Globals) -> Result<Exit> {
    let KindsArgs { kind } = args;
    let kinds: Vec<_> = match &kind {
        None => globals.registry.kinds().cloned().collect(),
        Some(name) => vec![globals.registry.get(name).with_context(|| {
            let known: Vec<&str> = globals.registry.kinds().map(|k| k.kind()).collect();
            format!("no stage kind `{name}`; the kinds are {}", known.join(", "))
        })?],
    };
    for k in kinds {
        out!("{} (v{}): {}", k.kind(), k.version(), k.description());
        for s in k.inputs() {
            let opt = if s.optional { ", optional" } else { "" };
            let many = if s.many { ", several" } else { "" };
            out!("    input {}: {}{many}{opt} — {}", s.name, s.describe(), s.doc);
        }
        out!("    output: {}", k.output_tags().join(", "));
        if kind.is_some() {
            out!("    params:");
            for p in secvec_engine::schema::params_of(k.as_ref()) {
                let default = match (p.required, p.default) {
                    (true, _) => "required".to_string(),
                    (false, Some(d)) => format!("default {d}"),
                    (false, None) => "optional".to_string(),
                };
                let doc = if p.doc.is_empty() {
                    String::new()
                } else {
                    format!(": {}", p.doc)
                };
                out!("      {} ({}; {default}){doc}", p.name, p.kind);
            }
        }
    }
    Ok(Exit::Success)
}
