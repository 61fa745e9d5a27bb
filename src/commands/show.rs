//! `secvec show`: what a stage's last run published.

use super::Globals;
use crate::exit::Exit;
use crate::show;
use anyhow::bail;
use anyhow::Result;

#[derive(clap::Args)]
pub struct ShowArgs {
    /// A stage (`pairs`), every variant of a matrix stage (`steered`), the variants with
    /// some values (`steered@theta=0.5`) or one variant (`steered@operator=negation,theta=0.5`).
    pub stage: String,
    /// The whole provenance record as JSON (a list when several outputs match).
    #[arg(long)]
    pub json: bool,
    /// The manifest name, when several ran a stage of this name.
    #[arg(long)]
    pub manifest: Option<String>,
}

pub fn run(args: ShowArgs, globals: &Globals) -> Result<Exit> {
    let ShowArgs { stage, manifest, json } = args;
    let found = show::find(&globals.out, &globals.cache, &stage, manifest.as_deref())?;
    let several = found
        .iter()
        .any(|f| f.manifest != found[0].manifest && f.stage == found[0].stage);
    if several {
        bail!(
            "stage `{stage}` ran in several manifests ({}); pick one with --manifest",
            found.iter().map(|f| f.manifest.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let records = || {
        found
            .iter()
            .map(|f| serde_json::json!({"outputs": f.link, "record": f.record}))
    };
    match (json, found.as_slice()) {
        (true, [_]) => out!("{}", serde_json::to_string_pretty(&records().next())?),
        (true, _) => out!("{}", serde_json::to_string_pretty(&records().collect::<Vec<_>>())?),
        (false, [one]) => out!("{}", show::summary(one)),
        (false, many) => out!("{}", show::table(many)),
    }
    Ok(Exit::Success)
}
