//! `generate`'s work: samples completions for every prompt with the model on libtorch.

use secvec_artifacts::prompts;
use secvec_artifacts::results::Results;
use secvec_artifacts::samples::{self, Generation, Sample};
use secvec_engine::StageContext;
use secvec_model::generate::{generate_until, EndOf, FinishReason, Sampling};
use secvec_model::load_for_inference;
use secvec_stages::generate::GenerateParams;
use secvec_stages::input_file::input_file;
use secvec_stages::score::postprocess::function_end;
use serde_json::json;

use crate::kind_of;

pub fn run(p: &GenerateParams, ctx: &StageContext) -> anyhow::Result<()> {
    let model_dir = &ctx.input("model").expect("required").path;
    let adapter = ctx.input("adapter").map(|a| a.path.as_path());
    let (model, tokenizer) = load_for_inference(model_dir, adapter, &p.device, kind_of(p.dtype), p.merge_adapter)?;
    let prompts_path = input_file(&ctx.input("prompts").expect("required").path, &p.prompts_file)?;
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
    for (k, prompt) in prompts.iter().enumerate() {
        ctx.check_cancelled()?;
        let ids = tokenizer.encode(&prompt.prompt)?;
        prompt_tokens += ids.len();
        let scenario = prompt.scenario.as_ref().filter(|_| p.stop_at_function_end);
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
