//! `generate`'s work: samples completions for every prompt with the model on libtorch.
//! Linked into `secvec-worker` alone (see `worker/src/lib.rs`).

use secvec_artifacts::prompts;
use secvec_artifacts::results::Results;
use secvec_artifacts::samples::{self, Generation, Sample};
use secvec_cache::{Digest, Memo};
use secvec_model::generate::{generate_until, EndOf, FinishReason, Sampling};
use secvec_model::load_for_inference;
use secvec_score::postprocess::function_end;
use secvec_stage::Stage;
use secvec_stage::StageContext;
use secvec_stages::generate::{Generate, GenerateParams};
use secvec_stages::input_file::input_file;
use serde_json::json;

use secvec_model::device::kind_of;

/// A prompt's samples depend on the model, the sampling, the prompt's text and its index (each
/// prompt's seed stream), not on the rest of its file: ablations whose prompts mostly equal
/// another run's recall those prompts' samples from the memo. `batch_size` changes nothing.
fn memo_key(
    p: &GenerateParams,
    ctx: &StageContext,
    index: usize,
    prompt: &prompts::Prompt,
    to_function_end: bool,
) -> Digest {
    let digest = |slot: &str| ctx.input(slot).map(|a| a.digest.hex());
    Memo::key(&json!({
        "generate": Generate::VERSION,
        "torch": env!("SECVEC_TORCH_VERSION"),
        "model": digest("model"),
        "adapter": digest("adapter"),
        "merge_adapter": p.merge_adapter,
        "device": p.device,
        "dtype": p.dtype,
        "n": p.n,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_new_tokens": p.max_new_tokens,
        "stop": p.stop,
        "seed": p.seed,
        "index": index,
        "prompt": prompt.prompt,
        // Where a sample ends depends on the scenario's language and prefix.
        "function_end": to_function_end.then(|| prompt.scenario.as_ref().map(|s| (&s.language, &s.prefix))),
    }))
}

pub fn run(p: &GenerateParams, ctx: &StageContext) -> anyhow::Result<()> {
    let model_dir = &ctx.required("model")?.path;
    let adapter = ctx.input("adapter").map(|a| a.path.as_path());
    let (model, tokenizer) = load_for_inference(model_dir, adapter, &p.device, kind_of(p.dtype), p.merge_adapter)?;
    let prompts_path = input_file(&ctx.required("prompts")?.path, &p.prompts_file)?;
    let mut prompts = prompts::read(&prompts_path)?;
    if let Some(limit) = p.limit {
        prompts.truncate(limit);
    }
    let sampling = Sampling {
        n: p.n,
        temperature: p.temperature,
        top_p: p.top_p,
        max_new_tokens: p.max_new_tokens,
        stop: p.stop.clone(),
        seed: p.seed,
        batch_size: p.batch_size,
    };
    let total = (prompts.len() * p.n) as u64;
    let mut finished = 0u64;
    let mut samples = Vec::new();
    let (mut tokens, mut stopped, mut prompt_tokens) = (0usize, 0usize, 0usize);
    let mut recalled = 0usize;
    for (k, prompt) in prompts.iter().enumerate() {
        ctx.check_cancelled()?;
        let ids = tokenizer.encode(&prompt.prompt)?;
        prompt_tokens += ids.len();
        let scenario = prompt.scenario.as_ref().filter(|_| p.stop_at_function_end);
        let key = memo_key(p, ctx, k, prompt, scenario.is_some());
        if let Some(known) = ctx
            .memo()
            .get(&key)
            .and_then(|b| serde_json::from_slice::<Vec<Sample>>(&b).ok())
        {
            for s in known {
                let g = s.generation.as_ref().expect("memoised samples carry their generation");
                tokens += g.completion_tokens;
                stopped += usize::from(g.finish_reason == samples::FinishReason::Stop);
                finished += 1;
                samples.push(Sample {
                    prompt_id: prompt.id.clone(),
                    ..s
                });
            }
            recalled += 1;
            ctx.progress(finished, total);
            continue;
        }
        let first = samples.len();
        let end_of = |text: &str| scenario.and_then(|sc| function_end(&sc.language, &sc.prefix, text));
        let completions = generate_until(
            &model,
            &tokenizer,
            &ids,
            k as u64,
            &sampling,
            &model.config.eos_token_ids,
            scenario.map(|_| &end_of as EndOf),
            &mut || {
                finished += 1;
                ctx.progress(finished, total);
            },
        )?;
        for c in completions {
            tokens += c.completion_tokens;
            stopped += usize::from(c.finish_reason == FinishReason::Stop);
            samples.push(Sample {
                prompt_id: prompt.id.clone(),
                sample: c.sample,
                text: c.text,
                program: None,
                generation: Some(Generation {
                    prompt_tokens: ids.len(),
                    completion_tokens: c.completion_tokens,
                    token_ids: c.token_ids,
                    finish_reason: c.finish_reason,
                }),
            });
        }
        // A memo that cannot be written costs a rerun, not this run.
        let _ = ctx.memo().put(&key, &serde_json::to_vec(&samples[first..])?);
    }
    if recalled > 0 {
        ctx.message(&format!(
            "{recalled} of {} prompts' samples came from the memo",
            prompts.len()
        ));
    }
    samples::write(ctx, &samples)?;
    let n = total.max(1) as f64;
    Results::from_rows([json!({
        "prompts": prompts.len(),
        "samples": total,
        "mean_prompt_tokens": prompt_tokens as f64 / prompts.len().max(1) as f64,
        "mean_completion_tokens": tokens as f64 / n,
        "stop_rate": stopped as f64 / n,
    })])
    .write(ctx)?;
    Ok(())
}
