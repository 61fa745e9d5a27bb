//! `margin`'s work: each held-out pair's LPO score margin under the model (and adapter).
//! Linked into `secvec-worker` alone (see `worker/src/lib.rs`).

use secvec_artifacts::pairs;
use secvec_artifacts::results::Results;
use secvec_model::device::kind_of;
use secvec_model::load_for_inference;
use secvec_model::train::loss::{Lpo, LpoScore};
use secvec_model::train::trainer::{self, Example};
use secvec_score::bootstrap::Bootstrap;
use secvec_stage::StageContext;
use secvec_stages::margin::MarginParams;
use serde_json::json;

pub fn run(p: &MarginParams, ctx: &StageContext) -> anyhow::Result<()> {
    let adapter = ctx.input("adapter").map(|a| a.path.as_path());
    let (model, tokenizer) =
        load_for_inference(&ctx.required("model")?.path, adapter, &p.device, kind_of(p.dtype), true)?;
    let input = &ctx.required("pairs")?.path;
    let file = input.join(pairs::split_file(&p.split));
    anyhow::ensure!(
        file.is_file(),
        "{} has no `{}` split ({} is missing); set `split` to one it has",
        input.display(),
        p.split,
        file.display()
    );
    let eos = model.config.eos_token_ids.first().copied();
    let (mut measured, mut skipped) = (Vec::new(), 0usize);
    for (i, pair) in pairs::read(&file)?.into_iter().enumerate() {
        let prompt = tokenizer.encode(&pair.prompt)?;
        let secure = tokenizer.encode_continuation(&pair.secure)?;
        let vulnerable = tokenizer.encode_continuation(&pair.vulnerable)?;
        // A pair whose sides are the same tokens has no margin to measure.
        if secure == vulnerable || prompt.len() + secure.len().max(vulnerable.len()) + 1 > p.max_length {
            skipped += 1;
            continue;
        }
        measured.push((i, pair, Example::pair(&prompt, &secure, &vulnerable, eos)));
    }
    anyhow::ensure!(
        !measured.is_empty(),
        "no pair of {} has a margin to measure (all {skipped} skipped)",
        file.display()
    );
    // LPO's score as the paper defines it (over the completion's length), whatever a training
    // used.
    let lpo = Lpo {
        score: LpoScore::Mean,
        ..Lpo::default()
    };
    let mut rows = Vec::new();
    let mut margins = Vec::new();
    for (k, (i, pair, example)) in measured.iter().enumerate() {
        ctx.check_cancelled()?;
        let m = trainer::lpo_margins(&model, std::slice::from_ref(example), &lpo, 256)[0];
        margins.push(m);
        rows.push(json!({"pair": i, "language": pair.language.name(), "cwe": pair.cwe, "margin": m}));
        ctx.progress(k as u64 + 1, measured.len() as u64);
    }
    let boot = Bootstrap {
        resamples: p.bootstrap,
        confidence: p.confidence,
        seed: p.bootstrap_seed,
    };
    let mean = margins.iter().sum::<f64>() / margins.len() as f64;
    let interval = boot.mean_interval(&margins);
    let set = json!({"set": p.split, "pairs": margins.len(), "skipped": skipped, "margin": mean,
                     "margin_lo": interval.map(|i| i.0), "margin_hi": interval.map(|i| i.1)});
    Results::from_rows(rows).with_sets(vec![set]).write(ctx)?;
    Ok(())
}
