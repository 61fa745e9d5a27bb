//! `secvec schema`: the JSON Schema of manifests and overlays.

use super::Globals;
use crate::exit::Exit;
use anyhow::Result;

#[derive(clap::Args)]
pub struct SchemaArgs {
    /// The schema of overlay files instead (`schema/overlay.schema.json`).
    #[arg(long)]
    pub overlay: bool,
}

pub fn run(args: SchemaArgs, globals: &Globals) -> Result<Exit> {
    let SchemaArgs { overlay } = args;
    let schema = if overlay {
        secvec_engine::schema::overlay_schema(&globals.registry)
    } else {
        secvec_engine::schema::manifest_schema(&globals.registry)
    };
    out!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(Exit::Success)
}
