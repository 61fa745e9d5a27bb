//! `train`'s work: tokenise the pairs into the method's examples (skipping, and counting, what
//! cannot be trained on), train a fresh LoRA on the frozen base, and write it in PEFT's format
//! with the training log.
//! Linked into `secvec-worker` alone (see `worker/src/lib.rs`).

use std::collections::BTreeMap;

use rand::seq::IndexedRandom;
use rand::SeedableRng;
use secvec_artifacts::pairs::{self, Pair};
use secvec_artifacts::results::Results;
use secvec_artifacts::{instructions, training_log};
use secvec_model::lora::{Adapter, Attach, LoraConfig};
use secvec_model::task_vector;
use secvec_model::tokenizer::TextTokenizer;
use secvec_model::train::batch::Sequence;
use secvec_model::train::loss::{Lpo, LpoScore, SafeCoderSample, Target};
use secvec_model::train::optim::Schedule;
use secvec_model::train::token_diff::changed_tokens;
use secvec_model::train::trainer::{self, Checkpointing, Example, Hyper, Objective};
use secvec_model::train::{set_training, trainable_parameters};
use secvec_model::transformer::Transformer;
use secvec_stage::StageContext;
use secvec_stages::input_file::input_file;
use secvec_stages::pair::PAPER_TEMPLATE;
use secvec_stages::train::{self as stage, Method, TrainParams};
use serde_json::json;

use secvec_model::device::kind_of;

/// What was left out of training, and why.
#[derive(Default, serde::Serialize)]
struct Skipped {
    /// Pairs whose sides are identical: nothing to prefer, so LPO and SafeCoder's security
    /// samples leave them out; SFT still learns the completion (counted all the same).
    identical: usize,
    empty_completion: usize,
    too_long: usize,
    /// SafeCoder security samples whose side has no changed token (one side only adds code):
    /// nothing for its loss to weigh, as its reference also drops them.
    no_changed_tokens: usize,
}

pub fn run(p: &TrainParams, ctx: &StageContext) -> anyhow::Result<()> {
    let r = p.resolved();
    let model_dir = &ctx.required("model")?.path;
    let device = secvec_model::device::parse_device(&p.device)?;
    let mut model = Transformer::load(model_dir, device, kind_of(p.dtype))?;
    let tokenizer = TextTokenizer::load(model_dir, model.config.vocab_size)?;
    let init = match (p.method, ctx.input("init")) {
        (Method::Lpo, None) => anyhow::bail!("LPO starts from the matching SFT adapter: bind the `init` input"),
        (_, Some(a)) => Some(Adapter::load(&a.path, device)?),
        (_, None) => None,
    };
    if let Some(init) = &init {
        init.attach(&mut model, Attach::Merged)?;
    }
    let pairs_input = &ctx.required("pairs")?.path;
    let pairs_path = input_file(pairs_input, &p.pairs_file)?;
    let pairs = pairs::read(&pairs_path)?;
    let eos = model.config.eos_token_ids.first().copied();
    let mut skipped = Skipped::default();
    let mut examples = examples(p, &tokenizer, eos, &pairs, &mut skipped)?;
    if p.method == Method::Safecoder {
        examples.extend(instruction_examples(p, ctx, &tokenizer, eos, &mut skipped)?);
    }
    anyhow::ensure!(
        !examples.is_empty(),
        "no example of {} is left to train on (skipped: {})",
        pairs_path.display(),
        serde_json::to_string(&skipped)?
    );
    // Held-out pairs show whether LPO did its job: the margin s(c⁺) − s(c⁻) before and after.
    let held_out = match pairs_input.join(pairs::split_file("val")) {
        v if (p.method == Method::Lpo || p.eval_every.is_some()) && pairs_input.is_dir() && v.is_file() => {
            let val = pairs::read(&v)?;
            let lpo_params = TrainParams {
                method: Method::Lpo,
                ..p.clone()
            };
            examples_of(&lpo_params, &tokenizer, eos, &val, &mut Skipped::default())?
                .into_iter()
                .map(|(e, _)| e)
                .collect()
        }
        _ => Vec::new(),
    };

    let config = LoraConfig {
        r: p.r,
        alpha: p.alpha,
        dropout: p.dropout,
        target_modules: p
            .target_modules
            .clone()
            .unwrap_or_else(|| LoraConfig::default().target_modules),
    };
    // The base's content digest, not its path: the adapter must not depend on where the cache is.
    let base_name = format!("blake3:{}", ctx.required("model")?.digest);
    let adapter = Adapter::init(&mut model, config.clone(), &base_name, p.seed);
    adapter.attach(&mut model, Attach::Unmerged)?;
    let params: Vec<_> = trainable_parameters(&mut model).into_iter().map(|(_, t)| t).collect();
    let lpo = Lpo {
        beta: p.beta,
        gamma: p.gamma,
        epsilon: p.epsilon,
        score: match p.lpo_score {
            stage::LpoScore::Mean => LpoScore::Mean,
            stage::LpoScore::Weighted => LpoScore::Weighted,
        },
    };
    let margin = |model: &Transformer| {
        let m = trainer::lpo_margins(model, &held_out, &lpo, 256);
        (!m.is_empty()).then(|| m.iter().sum::<f64>() / m.len() as f64)
    };
    let margin_before = margin(&model);
    let objective = match p.method {
        Method::Sft => Objective::Sft,
        Method::Lpo => Objective::Lpo {
            lpo,
            target: match p.target {
                stage::Target::Secure => Target::Secure,
                stage::Target::Vulnerable => Target::Vulnerable,
            },
        },
        Method::Safecoder => Objective::SafeCoder {
            loss_weight: p.loss_weight,
        },
    };
    let mut hyper = Hyper {
        epochs: r.epochs,
        learning_rate: r.learning_rate,
        batch_size: r.batch_size,
        micro_batch_size: p.micro_batch_size,
        warmup_steps: 0,
        schedule: match r.scheduler {
            stage::Scheduler::Linear => Schedule::Linear,
            stage::Scheduler::Cosine => Schedule::Cosine,
            stage::Scheduler::Constant => Schedule::Constant,
        },
        weight_decay: r.weight_decay,
        max_grad_norm: r.max_grad_norm,
        seed: p.seed,
        chunk: 256,
        gradient_checkpointing: p.gradient_checkpointing,
    };
    hyper.warmup_steps = p.warmup(hyper.steps_per_epoch(examples.len()) * hyper.epochs);
    set_training(&model, true);
    let checkpointing = Checkpointing {
        dir: ctx.scratch_dir().to_path_buf(),
        every: p.checkpoint_every,
    };
    if let Some(step) = trainer::checkpointed_steps(&checkpointing.dir) {
        ctx.notice(&format!("resuming from the checkpoint after step {step}"));
    }
    let logs = trainer::train(
        &model,
        &params,
        &examples,
        objective,
        &hyper,
        Some(&checkpointing),
        &mut |step, total| {
            ctx.check_cancelled()?;
            if let Some(every) = p.eval_every.filter(|&e| e > 0) {
                if step.step % every == 0 || step.step == total {
                    set_training(&model, false);
                    step.held_out_margin = margin(&model);
                    set_training(&model, true);
                }
            }
            ctx.progress(step.step as u64, total as u64);
            ctx.message(&format!("step {}/{total} loss {:.4}", step.step, step.loss));
            Ok(())
        },
    )?;
    set_training(&model, false);
    let margin_after = margin(&model);

    let trained = Adapter {
        config: config.clone(),
        base_model: base_name.clone(),
        modules: trained_factors(&mut model),
    };
    let out = ctx.out_dir();
    match &init {
        // The LPO task vector is the SFT delta plus the LPO delta: both, exactly, in one adapter.
        Some(init) => task_vector::combine(&[(init, 1.0), (&trained, 1.0)], &base_name).save(out)?,
        None => trained.save(out)?,
    }
    training_log::write(ctx, &logs)?;
    let last = logs.last();
    let curve = p.eval_every.map(|_| {
        std::iter::once((0, margin_before))
            .chain(logs.iter().map(|l| (l.step, l.held_out_margin)))
            .filter_map(|(step, m)| Some(json!({"step": step, "held_out_margin": m?})))
            .collect::<Vec<_>>()
    });
    Results::from_rows(
        std::iter::once(json!({
                "method": p.method,
                "target": p.target,
                "examples": examples.len(),
                "skipped": skipped,
                "steps": logs.len(),
                "epochs": hyper.epochs,
                "final_loss": last.map(|l| l.loss),
                "tokens": logs.iter().map(|l| l.tokens).sum::<usize>(),
                "device": p.device,
                "lpo_margin_before": margin_before,
                "lpo_margin_after": margin_after,
                "init_rank": init.as_ref().map(|a| a.config.r),
                "samples": (p.method == Method::Safecoder).then(|| safecoder_counts(&examples)),
        }))
        .chain(curve.into_iter().flatten()),
    )
    .write(ctx)?;
    Ok(())
}

/// How many SafeCoder samples of each kind were trained on (upsampling included).
fn safecoder_counts(examples: &[Example]) -> serde_json::Value {
    let count = |want: SafeCoderSample| {
        examples
            .iter()
            .filter(|e| matches!(e, Example::SafeCoder { kind, .. } if *kind == want))
            .count()
    };
    json!({
        "instruction": count(SafeCoderSample::Instruction),
        "preferred": count(SafeCoderSample::Preferred),
        "dispreferred": count(SafeCoderSample::Dispreferred),
    })
}

/// The model's trained LoRA factors, by module.
fn trained_factors(model: &mut Transformer) -> BTreeMap<String, (tch::Tensor, tch::Tensor)> {
    model
        .linears_mut()
        .into_iter()
        .filter_map(|(name, lin)| {
            let l = lin.lora.as_ref()?;
            Some((
                name,
                (
                    l.a.detach().to_kind(tch::Kind::Float),
                    l.b.detach().to_kind(tch::Kind::Float),
                ),
            ))
        })
        .collect()
}

fn examples(
    p: &TrainParams,
    tokenizer: &TextTokenizer,
    eos: Option<i64>,
    pairs: &[Pair],
    skipped: &mut Skipped,
) -> anyhow::Result<Vec<Example>> {
    let grouped = examples_of(p, tokenizer, eos, pairs, skipped)?;
    let (mut out, groups): (Vec<Example>, Vec<String>) = grouped.into_iter().unzip();
    if p.method == Method::Safecoder {
        upsample(&mut out, &groups, p.upsample_to, p.seed);
    }
    Ok(out)
}

/// SafeCoder's minority upsampling: every group with fewer than `to` examples gets random
/// repeats (seeded) up to `to`.
fn upsample(examples: &mut Vec<Example>, groups: &[String], to: usize, seed: u64) {
    let mut by_group: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        by_group.entry(g).or_default().push(i);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut extra = Vec::new();
    for members in by_group.values() {
        for _ in members.len()..to {
            extra.push(examples[*members.choose(&mut rng).expect("groups are not empty")].clone());
        }
    }
    examples.extend(extra);
}

/// Examples of `pairs` for the method, each with its (language, CWE) group; what cannot be
/// trained on is counted in `skipped`.
fn examples_of(
    p: &TrainParams,
    tokenizer: &TextTokenizer,
    eos: Option<i64>,
    pairs: &[Pair],
    skipped: &mut Skipped,
) -> anyhow::Result<Vec<(Example, String)>> {
    let mut out = Vec::new();
    for pair in pairs {
        let group = format!("{}/{}", pair.language.name(), pair.cwe);
        if pair.secure.trim().is_empty() || pair.vulnerable.trim().is_empty() {
            skipped.empty_completion += 1;
            continue;
        }
        let prompt = tokenizer.encode(&pair.prompt)?;
        let secure = tokenizer.encode_continuation(&pair.secure)?;
        let vulnerable = tokenizer.encode_continuation(&pair.vulnerable)?;
        let with_eos = |c: &[i64]| c.iter().copied().chain(eos).collect::<Vec<i64>>();
        let longest = prompt.len() + secure.len().max(vulnerable.len()) + 1;
        if longest > p.max_length {
            skipped.too_long += 1;
            continue;
        }
        let identical = secure == vulnerable;
        skipped.identical += usize::from(identical);
        match p.method {
            Method::Sft => {
                let completion = match p.target {
                    stage::Target::Secure => &secure,
                    stage::Target::Vulnerable => &vulnerable,
                };
                out.push((
                    Example::Sequence(Sequence::completion(&prompt, &with_eos(completion))),
                    group,
                ));
            }
            Method::Lpo | Method::Safecoder if identical => {}
            Method::Lpo => out.push((Example::pair(&prompt, &secure, &vulnerable, eos), group)),
            Method::Safecoder => {
                let (m_vul, m_sec) = changed_tokens(&vulnerable, &secure);
                // As SafeCoder: the loss on the changed tokens, the sequence cut after the last one.
                // SafeCoder prefers the secure side; the vulnerable adapter mirrors it.
                let (preferred, dispreferred) = match p.target {
                    stage::Target::Secure => ((&secure, m_sec), (&vulnerable, m_vul)),
                    stage::Target::Vulnerable => ((&vulnerable, m_vul), (&secure, m_sec)),
                };
                for (kind, (tokens, marks)) in [
                    (SafeCoderSample::Preferred, preferred),
                    (SafeCoderSample::Dispreferred, dispreferred),
                ] {
                    let Some(last) = marks.iter().rposition(|&m| m) else {
                        skipped.no_changed_tokens += 1;
                        continue;
                    };
                    let ids: Vec<i64> = prompt.iter().chain(&tokens[..=last]).copied().collect();
                    let weights = std::iter::repeat_n(0.0, prompt.len())
                        .chain(marks[..=last].iter().map(|&m| f32::from(u8::from(m))))
                        .collect();
                    let example = Example::SafeCoder {
                        kind,
                        sequence: Sequence { ids, weights },
                    };
                    out.push((example, group.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// SafeCoder's instruction data: the response's likelihood, after the paper's template.
fn instruction_examples(
    p: &TrainParams,
    ctx: &StageContext,
    tokenizer: &TextTokenizer,
    eos: Option<i64>,
    skipped: &mut Skipped,
) -> anyhow::Result<Vec<Example>> {
    let Some(input) = ctx.input("instructions") else {
        anyhow::bail!("SafeCoder-style tuning needs instruction data: bind the `instructions` input");
    };
    let mut out = Vec::new();
    for r in instructions::read(&input.path)? {
        if p.max_instructions.is_some_and(|n| out.len() >= n) {
            break;
        }
        let prompt = tokenizer.encode(&PAPER_TEMPLATE.replace("{instruction}", &r.text()))?;
        let response: Vec<i64> = tokenizer
            .encode_continuation(&r.output)?
            .into_iter()
            .chain(eos)
            .collect();
        if response.len() <= eos.map_or(0, |_| 1) {
            skipped.empty_completion += 1;
        } else if prompt.len() + response.len() > p.max_length {
            skipped.too_long += 1;
        } else {
            out.push(Example::SafeCoder {
                kind: SafeCoderSample::Instruction,
                sequence: Sequence::completion(&prompt, &response),
            });
        }
    }
    Ok(out)
}
