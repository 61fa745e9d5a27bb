//! Sampling completions: the prompt is prefilled once, its KV cache is copied to every sample
//! of a batch, samples that finish leave the batch, and each sample draws from its own seeded
//! stream so results do not depend on batching.

pub use secvec_artifacts::samples::FinishReason;
use serde::Serialize;
use tch::Tensor;

use super::sampling::{next_tokens, sample_rng};
use super::tokenizer::{TextTokenizer, TokenizerError};
use super::transformer::{ModelError, Transformer};

#[derive(Clone, Debug)]
pub struct Sampling {
    pub n: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
    pub seed: u64,
    /// Samples decoded together.
    pub batch_size: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Completion {
    pub sample: usize,
    /// Cut before the first stop string.
    pub text: String,
    /// Every token generated, stop string included: the exact output, which decoding a
    /// byte-level vocabulary can lose.
    pub token_ids: Vec<i64>,
    pub completion_tokens: usize,
    pub finish_reason: FinishReason,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("the prompt is empty after tokenisation")]
    EmptyPrompt,
}

struct Row {
    sample: usize,
    tokens: Vec<i64>,
}

/// Keeps the elements at the (ascending) positions in `keep`.
fn retain_indices<T>(v: &mut Vec<T>, keep: &[usize]) {
    let mut j = 0;
    v.retain(|_| {
        let k = keep.binary_search(&j).is_ok();
        j += 1;
        k
    });
}

/// Generates `s.n` completions of `prompt`; `prompt_key` identifies the prompt in the seeds.
pub fn generate(
    model: &Transformer,
    tokenizer: &TextTokenizer,
    prompt: &[i64],
    prompt_key: u64,
    s: &Sampling,
    eos: &[i64],
    on_sample_done: &mut dyn FnMut(),
) -> Result<Vec<Completion>, GenerateError> {
    generate_until(model, tokenizer, prompt, prompt_key, s, eos, None, on_sample_done)
}

/// Where a sample's text is complete, if it is yet: a byte offset into it.
pub type EndOf<'a> = &'a dyn Fn(&str) -> Option<usize>;

/// [`generate`], where `end_of(text)` may also end a sample: the byte offset where its text
/// is complete (e.g. the end of the function a scenario's prefix opened), if it is yet.
#[allow(clippy::too_many_arguments)]
pub fn generate_until(
    model: &Transformer,
    tokenizer: &TextTokenizer,
    prompt: &[i64],
    prompt_key: u64,
    s: &Sampling,
    eos: &[i64],
    end_of: Option<EndOf>,
    on_sample_done: &mut dyn FnMut(),
) -> Result<Vec<Completion>, GenerateError> {
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    let _guard = tch::no_grad_guard();
    let capacity = (prompt.len() + s.max_new_tokens) as i64;
    let mut shared = model.new_cache(1, capacity);
    let prompt_logits = model
        .forward(&Tensor::from_slice(prompt).unsqueeze(0), &mut shared)?
        .select(1, -1);
    let mut done: Vec<Completion> = Vec::with_capacity(s.n);
    let samples: Vec<usize> = (0..s.n).collect();
    for chunk in samples.chunks(s.batch_size.max(1)) {
        let nb = chunk.len() as i64;
        let mut cache = shared.repeat(nb);
        let mut last = prompt_logits.repeat([nb, 1]);
        let mut rows: Vec<Row> = chunk
            .iter()
            .map(|&i| Row {
                sample: i,
                tokens: Vec::new(),
            })
            .collect();
        // One stream per row, kept in step with `rows`.
        let mut rngs: Vec<_> = chunk
            .iter()
            .map(|&i| sample_rng(s.seed, prompt_key, i as u64))
            .collect();
        for step in 0..s.max_new_tokens {
            let next = next_tokens(&last, s.temperature, s.top_p, &mut rngs);
            let mut keep = Vec::new();
            for (j, row) in rows.iter_mut().enumerate() {
                let token = next[j];
                let finished = if eos.contains(&token) {
                    Some((FinishReason::Stop, None))
                } else {
                    row.tokens.push(token);
                    let stop_at = if s.stop.is_empty() && end_of.is_none() {
                        None
                    } else {
                        let text = tokenizer.decode(&row.tokens)?;
                        s.stop
                            .iter()
                            .filter_map(|st| text.find(st.as_str()))
                            .chain(end_of.and_then(|f| f(&text)))
                            .min()
                            .map(|at| text[..at].to_string())
                    };
                    match stop_at {
                        Some(text) => Some((FinishReason::Stop, Some(text))),
                        None if step + 1 == s.max_new_tokens => Some((FinishReason::Length, None)),
                        None => None,
                    }
                };
                match finished {
                    None => keep.push(j),
                    Some((reason, text)) => {
                        let text = match text {
                            Some(t) => t,
                            None => tokenizer.decode(&row.tokens)?,
                        };
                        done.push(Completion {
                            sample: row.sample,
                            text,
                            token_ids: row.tokens.clone(),
                            completion_tokens: row.tokens.len(),
                            finish_reason: reason,
                        });
                        on_sample_done();
                    }
                }
            }
            if keep.is_empty() {
                break;
            }
            let next_ids: Vec<i64> = keep.iter().map(|&j| next[j]).collect();
            if keep.len() < rows.len() {
                let idx: Vec<i64> = keep.iter().map(|&j| j as i64).collect();
                cache = cache.select_rows(&Tensor::from_slice(&idx).to_device(model.device));
                retain_indices(&mut rows, &keep);
                retain_indices(&mut rngs, &keep);
            }
            let ids = Tensor::from_slice(&next_ids).to_device(model.device).unsqueeze(1);
            last = model.forward(&ids, &mut cache)?.select(1, -1);
        }
    }
    done.sort_by_key(|c| c.sample);
    Ok(done)
}
