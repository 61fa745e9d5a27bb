//! `secvec config`: prints a manifest as composed, or its concrete stages.

use super::Composed;
use super::Globals;
use crate::exit::Exit;
use anyhow::Result;
use secvec_engine::manifest;
use secvec_engine::plan::{self, Plan};

#[derive(clap::Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub composed: Composed,
    /// Print the concrete stages with their resolved params and inputs.
    #[arg(long)]
    pub resolved: bool,
}

pub fn run(args: ConfigArgs, globals: &Globals) -> Result<Exit> {
    let ConfigArgs { composed, resolved } = args;
    let text = if resolved {
        let plan = composed.plan(&globals.registry, &globals.cache)?;
        serde_yaml::to_string(&resolved_stages(&plan))?
    } else {
        let loaded = manifest::load(&composed.manifest, &composed.overlays, &composed.sets)?;
        serde_yaml::to_string(&loaded.manifest)?
    };
    out!("{}", text.trim_end());
    Ok(Exit::Success)
}

/// Every concrete stage of a plan as `secvec config --resolved` prints it: kind, labels, the
/// params the stage receives, and each input as stage names or paths.
fn resolved_stages(plan: &Plan) -> serde_json::Value {
    let stages: serde_json::Map<String, serde_json::Value> = plan
        .nodes
        .iter()
        .map(|n| {
            let inputs: serde_json::Map<String, serde_json::Value> = n
                .inputs
                .iter()
                .map(|(slot, sources)| {
                    let named: Vec<String> = sources
                        .iter()
                        .map(|s| match s {
                            plan::Source::Node(i) => plan.nodes[*i].name.clone(),
                            plan::Source::Path { path, .. } => path.display().to_string(),
                        })
                        .collect();
                    (slot.clone(), serde_json::json!(named))
                })
                .collect();
            let mut stage = serde_json::json!({"kind": n.kind.kind(), "params": n.params, "inputs": inputs});
            if !n.labels.is_empty() {
                stage["labels"] = serde_json::json!(n.labels);
            }
            (n.name.clone(), stage)
        })
        .collect();
    serde_json::json!({"name": plan.manifest_name, "stages": stages})
}
