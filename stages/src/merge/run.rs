//! `merge`'s work: α τ_sec − θ τ_insec as one stacked adapter.
//! Linked into `secvec-worker` alone (see `worker/src/lib.rs`).

use secvec_artifacts::results::Results;
use secvec_model::lora::Adapter;
use secvec_model::materialize::materialize;
use secvec_model::task_vector::{check_compatible, combine, Named};
use secvec_stage::{StageContext, UnboundInput};
use secvec_stages::merge::MergeParams;
use serde_json::json;

pub fn run(p: &MergeParams, ctx: &StageContext) -> anyhow::Result<()> {
    let load = |slot: &str| -> anyhow::Result<Option<Adapter>> {
        ctx.input(slot)
            .map(|a| Adapter::load(&a.path, tch::Device::Cpu))
            .transpose()
            .map_err(|e| anyhow::anyhow!("the `{slot}` adapter: {e}"))
    };
    let vulnerable = load("vulnerable")?.ok_or_else(|| UnboundInput("vulnerable".into()))?;
    let alpha = p.alpha();
    anyhow::ensure!(
        p.theta.is_finite() && alpha.is_finite(),
        "params.theta and params.alpha must be finite numbers (θ = {}, α = {alpha})",
        p.theta
    );
    let secure = load("secure")?;
    let mut terms = Vec::new();
    match (&secure, alpha) {
        (Some(s), _) => {
            check_compatible(&Named::secure(s), &Named::vulnerable(&vulnerable))?;
            terms.push((s, alpha));
        }
        (None, a) if a != 0.0 => anyhow::bail!(
            "α = {a} ({}) adds the secure vector: bind the `secure` input",
            p.operator.name()
        ),
        (None, _) => {}
    }
    terms.push((&vulnerable, -p.theta));
    let steered = combine(&terms, &vulnerable.base_model);
    match (p.materialize, ctx.input("model")) {
        (false, _) => steered.save(ctx.out_dir())?,
        (true, None) => anyhow::bail!("materialize: true writes the whole model: bind the `model` input"),
        (true, Some(base)) => {
            let digest = format!("blake3:{}", base.digest);
            // secvec's adapters name their base by its digest; others name a path or hub id.
            anyhow::ensure!(
                !steered.base_model.starts_with("blake3:") || steered.base_model == digest,
                "the adapters were trained on base `{}`, but the `model` input is `{digest}`",
                steered.base_model
            );
            materialize(&base.path, &steered, ctx.out_dir())?;
        }
    }
    Results::from_rows([json!({
        "operator": p.operator,
        "alpha": alpha,
        "theta": p.theta,
        "rank": steered.config.r,
        "materialized": p.materialize,
    })])
    .write(ctx)?;
    Ok(())
}
