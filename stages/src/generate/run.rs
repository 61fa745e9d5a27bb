//! `generate`'s work: samples completions for every prompt with the model on libtorch.
//! Linked into `secvec-worker` alone (see `worker/src/lib.rs`).

use secvec_artifacts::prompts;
use secvec_artifacts::results::Results;
use secvec_artifacts::samples::{self, FinishReason, Generation, Sample};
use secvec_cache::{Digest, Memo};
use secvec_model::generate::{generate_many, Batching, EndOf, GenerateError, Request, Sampling};
use secvec_model::load_for_inference;
use secvec_score::postprocess::function_end;
use secvec_stage::Stage;
use secvec_stage::StageContext;
use secvec_stages::generate::{Generate, GenerateParams};
use secvec_stages::input_file::input_file;
use serde_json::json;
use std::ops::ControlFlow;

use secvec_model::device::kind_of;

/// A prompt's samples depend on the model, the sampling and the prompt's text (its samples'
/// seed streams), not on the rest of its file nor on the batch: ablations whose prompts mostly
/// equal another run's recall those prompts' samples from the memo.
fn memo_key(p: &GenerateParams, ctx: &StageContext, prompt: &prompts::Prompt, to_function_end: bool) -> Digest {
    let digest = |slot: &str| ctx.input(slot).map(|a| a.digest.hex());
    let cuda = p.device.starts_with("cuda");
    let mut key = json!({
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
        "prompt": prompt.prompt,
        // Where a sample ends depends on the scenario's language and prefix.
        "function_end": to_function_end.then(|| prompt.scenario.as_ref().map(|s| (&s.language, &s.prefix))),
        // CUDA's kernels change with the batch's shape: there a sample depends on the batch size
        // and on the budget that limits it.
        "batch_size": cuda.then_some(p.batch_size),
    });
    if let Some(budget) = p.kv_budget_mib.filter(|_| cuda) {
        key["kv_budget_mib"] = budget.into();
    }
    Memo::key(&key)
}

/// A prompt's place in its samples' seed streams: its text, so a prompt draws the same samples
/// wherever it sits in a file and whatever prompts sit beside it.
fn seed_key(prompt: &str) -> u64 {
    let hash = blake3::hash(prompt.as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

pub fn run(p: &GenerateParams, ctx: &StageContext) -> anyhow::Result<()> {
    if let Some(backend) = &p.backend {
        return secvec_stages::generate::served::run(p, backend, ctx);
    }
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
    };
    let batching = Batching {
        batch_size: p.batch_size,
        kv_budget: p.kv_budget_mib.map(|mib| mib << 20),
    };
    let total = (prompts.len() * p.n) as u64;
    let mut finished = 0u64;
    let mut prompt_tokens = 0usize;
    // Each prompt's samples, from the memo or as its samples finish.
    let mut per_prompt: Vec<Vec<Sample>> = vec![Vec::new(); prompts.len()];
    let mut todo = Vec::new();
    for (k, prompt) in prompts.iter().enumerate() {
        let ids = tokenizer.encode(&prompt.prompt)?;
        prompt_tokens += ids.len();
        let to_function_end = p.stop_at_function_end && prompt.scenario.is_some();
        let key = memo_key(p, ctx, prompt, to_function_end);
        match ctx
            .memo()
            .get(&key)
            .and_then(|b| serde_json::from_slice::<Vec<Sample>>(&b).ok())
        {
            Some(known) => {
                finished += known.len() as u64;
                per_prompt[k] = known
                    .into_iter()
                    .map(|s| Sample {
                        prompt_id: prompt.id.clone(),
                        ..s
                    })
                    .collect();
            }
            None => todo.push((k, ids, key, to_function_end)),
        }
    }
    let recalled = prompts.len() - todo.len();
    ctx.progress(finished, total);
    let end_rules: Vec<Box<dyn Fn(&str) -> Option<usize>>> = todo
        .iter()
        .map(|(k, _, _, to_function_end)| {
            let scenario = prompts[*k].scenario.as_ref().filter(|_| *to_function_end);
            Box::new(move |text: &str| scenario.and_then(|sc| function_end(&sc.language, &sc.prefix, text)))
                as Box<dyn Fn(&str) -> Option<usize>>
        })
        .collect();
    let requests: Vec<Request> = todo
        .iter()
        .zip(&end_rules)
        .map(|((k, ids, _, to_function_end), end)| Request {
            ids,
            key: seed_key(&prompts[*k].prompt),
            end_of: to_function_end.then_some(end.as_ref() as EndOf),
        })
        .collect();
    let generated = generate_many(
        &model,
        &tokenizer,
        &requests,
        &sampling,
        batching,
        &model.config.eos_token_ids,
        &mut |r, c| {
            let (k, ids, key, _) = &todo[r];
            let done = &mut per_prompt[*k];
            done.push(Sample {
                prompt_id: prompts[*k].id.clone(),
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
            if done.len() == p.n {
                done.sort_by_key(|s| s.sample);
                // A memo that cannot be written costs a rerun, not this run.
                if let Ok(bytes) = serde_json::to_vec(done) {
                    let _ = ctx.memo().put(key, &bytes);
                }
            }
            finished += 1;
            ctx.progress(finished, total);
            match ctx.check_cancelled() {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        },
    );
    if let Err(GenerateError::Stopped) = generated {
        ctx.check_cancelled()?;
    }
    generated?;
    if recalled > 0 {
        ctx.message(&format!(
            "{recalled} of {} prompts' samples came from the memo",
            prompts.len()
        ));
    }
    let samples: Vec<Sample> = per_prompt.into_iter().flatten().collect();
    let generations = samples
        .iter()
        .map(|s| s.generation.as_ref().expect("generated samples carry their generation"));
    let tokens: usize = generations.clone().map(|g| g.completion_tokens).sum();
    let stopped = generations.filter(|g| g.finish_reason == FinishReason::Stop).count();
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
