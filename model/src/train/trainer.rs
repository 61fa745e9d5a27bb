//! The training loop: epochs of seeded shuffles, optimiser steps of micro-batches with gradient
//! accumulation, and one of the three objectives (SFT, LPO, SafeCoder).

use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::Tensor;

use super::batch::{Batch, Padding, Sequence};
use super::checkpoint;
use super::logprobs::{token_logprobs, TokenLogprobs};
use super::loss::{self, Lpo, SafeCoderSample, Target, Tokens};
use super::optim::{clip_grad_norm, AdamW, Schedule};
use crate::transformer::{Hidden, PassOptions, Transformer};
use secvec_artifacts::training_log::StepLog;

/// One training example.
#[derive(Clone, Debug)]
pub enum Example {
    /// SFT: a sequence with the loss on its weighted tokens.
    Sequence(Sequence),
    /// LPO: the same prompt with its secure and vulnerable completions; each sequence weights its
    /// completion tokens 1, and `*_changed` marks (per position) the tokens that differ.
    Pair {
        secure: Sequence,
        vulnerable: Sequence,
        secure_changed: Vec<f32>,
        vulnerable_changed: Vec<f32>,
    },
    /// SafeCoder: a sequence whose weighted tokens carry its kind's loss.
    SafeCoder { kind: SafeCoderSample, sequence: Sequence },
}

impl Example {
    /// An LPO pair: `prompt` followed by each completion (and `eos`), each marking the tokens
    /// that differ from the other completion's (a port of `difflib.ndiff` on token ids).
    pub fn pair(prompt: &[i64], secure: &[i64], vulnerable: &[i64], eos: Option<i64>) -> Example {
        let (m_vul, m_sec) = super::token_diff::changed_tokens(vulnerable, secure);
        let marks = |m: &[bool]| -> Vec<f32> {
            std::iter::repeat_n(0.0, prompt.len())
                .chain(m.iter().map(|&x| f32::from(u8::from(x))))
                .chain(eos.map(|_| 0.0))
                .collect()
        };
        let with_eos = |c: &[i64]| c.iter().copied().chain(eos).collect::<Vec<i64>>();
        Example::Pair {
            secure: Sequence::completion(prompt, &with_eos(secure)),
            vulnerable: Sequence::completion(prompt, &with_eos(vulnerable)),
            secure_changed: marks(&m_sec),
            vulnerable_changed: marks(&m_vul),
        }
    }

    fn target_tokens(&self) -> usize {
        match self {
            Example::Sequence(s) | Example::SafeCoder { sequence: s, .. } => s.target_tokens(),
            Example::Pair { secure, vulnerable, .. } => secure.target_tokens() + vulnerable.target_tokens(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Objective {
    Sft,
    Lpo { lpo: Lpo, target: Target },
    SafeCoder { loss_weight: f64 },
}

#[derive(Clone, Debug)]
pub struct Hyper {
    pub epochs: usize,
    pub learning_rate: f64,
    /// Examples per optimiser step.
    pub batch_size: usize,
    /// Examples per forward pass (SafeCoder always uses 1, as its reference does).
    pub micro_batch_size: usize,
    pub warmup_steps: usize,
    pub schedule: Schedule,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub seed: u64,
    /// Positions per chunk of the output projection.
    pub chunk: i64,
    /// Recompute each layer's activations in the backward pass instead of keeping them.
    pub gradient_checkpointing: bool,
}

impl Hyper {
    pub fn steps_per_epoch(&self, examples: usize) -> usize {
        examples.div_ceil(self.batch_size.max(1))
    }
}

/// Where and how often training saves its state, to resume from after a kill.
pub struct Checkpointing {
    pub dir: PathBuf,
    /// Optimiser steps between checkpoints.
    pub every: usize,
}

/// The steps a checkpoint in `dir` covers, if there is one.
pub fn checkpointed_steps(dir: &std::path::Path) -> Option<usize> {
    checkpoint::steps(dir)
}

/// Trains `params` (the model's trainable LoRA factors) on `examples`. `on_step` sees every step
/// as it ends (for progress, and to add a measurement to its log) and may stop training by
/// returning an error.
///
/// Every step is a function of the seed and its index alone (each epoch's shuffle and each
/// step's dropout are seeded from them), so training resumed from a checkpoint ends with the
/// parameters an uninterrupted run gives, bit for bit on CPU.
pub fn train(
    model: &Transformer,
    params: &[Tensor],
    examples: &[Example],
    objective: Objective,
    hyper: &Hyper,
    checkpointing: Option<&Checkpointing>,
    on_step: &mut dyn FnMut(&mut StepLog, usize) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<StepLog>> {
    let per_epoch = hyper.steps_per_epoch(examples.len());
    let total = per_epoch * hyper.epochs;
    let mut opt = AdamW::new(params, hyper.weight_decay);
    let mut logs = match checkpointing {
        Some(c) => checkpoint::restore(&c.dir, params, &mut opt)?,
        None => Vec::new(),
    };
    let resumed = logs.len();
    for epoch in 0..hyper.epochs {
        let mut rng = rand::rngs::StdRng::seed_from_u64(hyper.seed.wrapping_add(epoch as u64));
        let mut order: Vec<usize> = (0..examples.len()).collect();
        order.shuffle(&mut rng);
        for (k, batch) in order.chunks(hyper.batch_size.max(1)).enumerate() {
            let step = epoch * per_epoch + k;
            if step < resumed {
                continue;
            }
            let batch: Vec<&Example> = batch.iter().map(|&i| &examples[i]).collect();
            let tokens: usize = batch.iter().map(|e| e.target_tokens()).sum();
            let micro = match objective {
                Objective::SafeCoder { .. } => 1,
                _ => hyper.micro_batch_size.max(1),
            };
            let mut loss = 0.0;
            let mut grad_norm = 0.0;
            for (m, part) in batch.chunks(micro).enumerate() {
                let pass = PassOptions {
                    dropout_seed: pass_seed(hyper.seed, step, m),
                    checkpoint: hyper.gradient_checkpointing,
                };
                loss += forward_backward(model, part, objective, pass, hyper.chunk, tokens, batch.len());
                if matches!(objective, Objective::SafeCoder { .. }) {
                    // SafeCoder clips at every micro-step.
                    grad_norm = clip_grad_norm(params, hyper.max_grad_norm);
                }
            }
            if !matches!(objective, Objective::SafeCoder { .. }) {
                grad_norm = clip_grad_norm(params, hyper.max_grad_norm);
            }
            let learning_rate = hyper.learning_rate * hyper.schedule.factor(step, hyper.warmup_steps, total);
            opt.step(learning_rate);
            let mut log = StepLog {
                step: step + 1,
                epoch: epoch + 1,
                loss,
                learning_rate,
                grad_norm,
                tokens,
                held_out_margin: None,
            };
            on_step(&mut log, total)?;
            logs.push(log);
            if let Some(c) = checkpointing.filter(|c| c.every > 0 && logs.len() % c.every == 0 && logs.len() < total) {
                checkpoint::save(&c.dir, params, &opt, &logs)?;
            }
        }
    }
    Ok(logs)
}

/// The dropout seed of micro-batch `micro` of optimiser step `step`: a function of the seed and
/// the indices alone, so a resumed run draws the masks an uninterrupted one does.
fn pass_seed(seed: u64, step: usize, micro: usize) -> i64 {
    let mut z = seed ^ ((step as u64) << 20 | micro as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}

/// One micro-batch's loss, with its gradient accumulated.
fn forward_backward(
    model: &Transformer,
    part: &[&Example],
    objective: Objective,
    pass: PassOptions,
    chunk: i64,
    step_tokens: usize,
    step_examples: usize,
) -> f64 {
    let device = model.device;
    match objective {
        Objective::Sft => {
            let seqs: Vec<&Sequence> = part
                .iter()
                .map(|e| match e {
                    Example::Sequence(s) => s,
                    _ => unreachable!("SFT trains on sequences"),
                })
                .collect();
            let batch = Batch::collate(&seqs, Padding::Right, device);
            let hidden = model.training_pass(&batch.ids, &batch.attention_mask, pass);
            let lp = token_logprobs(model, &hidden.states, &batch.ids, &batch.weights.gt(0.0), chunk);
            let w = lp.gather(&batch.weights);
            let value = lp.backward_linear(&loss::sft_coefficients(&w, step_tokens.max(1) as f64));
            hidden.finish_backward();
            value
        }
        Objective::Lpo { lpo, target } => {
            let (hidden, lp, changed, sequence) = pair_logprobs(model, part, pass, chunk);
            let pairs: Vec<(i64, i64)> = (0..part.len() as i64).map(|i| (2 * i, 2 * i + 1)).collect();
            let value = lp.backward(|logp| {
                let tokens = Tokens {
                    logp,
                    changed: &changed,
                    sequence: &sequence,
                    sequences: 2 * part.len() as i64,
                };
                loss::lpo(&lpo, target, &tokens, &pairs, step_examples as f64)
            });
            hidden.finish_backward();
            value
        }
        Objective::SafeCoder { loss_weight } => {
            let mut total = 0.0;
            for e in part {
                let Example::SafeCoder { kind, sequence } = e else {
                    unreachable!("SafeCoder trains on its samples")
                };
                let batch = Batch::collate(&[sequence], Padding::Right, device);
                let hidden = model.training_pass(&batch.ids, &batch.attention_mask, pass);
                let lp = token_logprobs(model, &hidden.states, &batch.ids, &batch.weights.gt(0.0), chunk);
                total += lp.backward(|logp| loss::safecoder(*kind, logp, loss_weight, step_examples as f64));
                hidden.finish_backward();
            }
            total
        }
    }
}

/// Token log-probabilities of the completions of `pairs` (sequences 2i and 2i + 1 are pair i's
/// secure and vulnerable sides), with each token's changed mark and sequence.
fn pair_logprobs<'m>(
    model: &'m Transformer,
    pairs: &[&Example],
    pass: PassOptions,
    chunk: i64,
) -> (Hidden<'m>, TokenLogprobs, Tensor, Tensor) {
    let mut seqs = Vec::new();
    let mut marks = Vec::new();
    for e in pairs {
        let Example::Pair {
            secure,
            vulnerable,
            secure_changed,
            vulnerable_changed,
        } = e
        else {
            unreachable!("LPO trains on pairs")
        };
        for (s, m) in [(secure, secure_changed), (vulnerable, vulnerable_changed)] {
            seqs.push(s);
            marks.push(Sequence {
                ids: s.ids.clone(),
                weights: m.clone(),
            });
        }
    }
    let batch = Batch::collate(&seqs, Padding::Right, model.device);
    let mark_refs: Vec<&Sequence> = marks.iter().collect();
    let marks = Batch::collate(&mark_refs, Padding::Right, model.device).weights;
    let hidden = model.training_pass(&batch.ids, &batch.attention_mask, pass);
    let lp = token_logprobs(model, &hidden.states, &batch.ids, &batch.weights.gt(0.0), chunk);
    let changed = lp.gather(&marks);
    let sequence = lp.sequence();
    (hidden, lp, changed, sequence)
}

/// The LPO score margin s(c⁺, m⁺) − s(c⁻, m⁻) of each pair under the model (no gradient): what
/// LPO raises for the secure adapter and lowers for the vulnerable one.
pub fn lpo_margins(model: &Transformer, pairs: &[Example], lpo: &Lpo, chunk: i64) -> Vec<f64> {
    let _guard = tch::no_grad_guard();
    pairs
        .iter()
        .map(|e| {
            let pass = PassOptions {
                dropout_seed: 0,
                checkpoint: false,
            };
            let (_, lp, changed, sequence) = pair_logprobs(model, &[e], pass, chunk);
            let logp = lp.logp();
            let tokens = Tokens {
                logp: &logp,
                changed: &changed,
                sequence: &sequence,
                sequences: 2,
            };
            let scores = loss::lpo_scores(lpo, &tokens);
            scores.double_value(&[0]) - scores.double_value(&[1])
        })
        .collect()
}
