//! `diagnose`'s work: the two adapters' task-vector similarity, from their factors.
//! Linked into `secvec-worker` alone (see `worker/src/lib.rs`).

use secvec_artifacts::results::Results;
use secvec_model::lora::Adapter;
use secvec_model::task_vector::{diagnose, Named};
use secvec_stage::StageContext;
use secvec_stages::diagnose::DiagnoseParams;
use serde_json::json;

pub fn run(p: &DiagnoseParams, ctx: &StageContext) -> anyhow::Result<()> {
    let load =
        |slot: &str| -> anyhow::Result<Adapter> { Ok(Adapter::load(&ctx.required(slot)?.path, tch::Device::Cpu)?) };
    let (secure, vulnerable) = (load("secure")?, load("vulnerable")?);
    let d = diagnose(&Named::secure(&secure), &Named::vulnerable(&vulnerable))?;
    d.write(ctx)?;
    let row = |scope: &str, part: String, s: &secvec_artifacts::diagnostics::Similarity| {
        json!({
            "strategy": p.strategy,
            "scope": scope,
            "part": part,
            "cosine": s.cosine,
            "sign_agreement": s.sign_agreement,
            "entries": s.entries,
        })
    };
    let rows = std::iter::once(row("all", "all".into(), &d.all))
        .chain(d.by_module.iter().map(|(m, s)| row("module", m.clone(), s)))
        .chain(d.by_layer.iter().map(|(l, s)| row("layer", l.to_string(), s)));
    Results::from_rows(rows).write(ctx)?;
    Ok(())
}
