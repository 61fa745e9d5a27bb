//! Sampling completions with continuous batching: every prompt's samples share one decoding
//! loop of up to `batch_size` rows. A prompt is prefilled once when its first sample is
//! admitted and each of its samples continues from a copy of that cache; a sample that
//! finishes leaves and the next waiting one takes its row at once, so long and short samples
//! of different prompts mix without padding. Every sample draws from its own seeded stream and
//! its logits do not depend on the rows beside it ([`Transformer::decode_rows`]), so a sample
//! is the same tokens whatever the batch size, the other prompts and their order.

pub use secvec_artifacts::samples::FinishReason;
use std::ops::ControlFlow;

use serde::Serialize;
use tch::Tensor;

use super::sampling::{next_tokens, sample_rng};
use super::tokenizer::{TextTokenizer, TokenizerError};
use super::transformer::{KvCache, ModelError, Transformer};

#[derive(Clone, Debug)]
pub struct Sampling {
    pub n: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
    pub seed: u64,
    /// Rows decoded together, samples of any prompts.
    pub batch_size: usize,
    /// Bytes of KV cache the rows (and the prompt being shared out) may hold at once; a row
    /// joins only if its cache fits beside the others' (one row always runs). `None`: no limit
    /// but `batch_size`.
    pub kv_budget: Option<u64>,
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
    #[error("prompt {0} is empty after tokenisation")]
    EmptyPrompt(usize),
    #[error("sampling was stopped by its caller")]
    Stopped,
}

/// Where a sample's text is complete, if it is yet: a byte offset into it.
pub type EndOf<'a> = &'a dyn Fn(&str) -> Option<usize>;

/// One prompt to sample.
pub struct Request<'a> {
    pub ids: &'a [i64],
    /// The prompt's identity in every sample's random stream: give the same prompt the same key
    /// wherever it sits among the others.
    pub key: u64,
    /// May end a sample: the byte offset where its text is complete (e.g. the end of the
    /// function a scenario's prefix opened), if it is yet.
    pub end_of: Option<EndOf<'a>>,
}

/// A sample being decoded.
struct Row {
    request: usize,
    sample: usize,
    tokens: Vec<i64>,
    rng: rand::rngs::StdRng,
    cache: KvCache,
    /// `[1, vocab]`: the distribution of its next token.
    logits: Tensor,
}

/// A prompt prefilled for the samples still to be admitted.
struct Prefix {
    request: usize,
    cache: KvCache,
    logits: Tensor,
}

/// Samples `s.n` completions of every request, `on_done(request, completion)` as each sample
/// finishes (in no fixed order); `on_done` stops the sampling by breaking.
pub fn generate_many(
    model: &Transformer,
    tokenizer: &TextTokenizer,
    requests: &[Request],
    s: &Sampling,
    eos: &[i64],
    on_done: &mut dyn FnMut(usize, Completion) -> ControlFlow<()>,
) -> Result<(), GenerateError> {
    if let Some(empty) = requests.iter().position(|r| r.ids.is_empty()) {
        return Err(GenerateError::EmptyPrompt(empty));
    }
    let _guard = tch::no_grad_guard();
    let mut waiting = (0..requests.len())
        .flat_map(|r| (0..s.n).map(move |k| (r, k)))
        .peekable();
    let mut prefix: Option<Prefix> = None;
    let mut rows: Vec<Row> = Vec::new();
    type Done<'f> = &'f mut dyn FnMut(usize, Completion) -> ControlFlow<()>;
    let finish = |row: Row, reason: FinishReason, text: Option<String>, on_done: Done| {
        let text = match text {
            Some(t) => t,
            None => tokenizer.decode(&row.tokens)?,
        };
        let completion = Completion {
            sample: row.sample,
            text,
            completion_tokens: row.tokens.len(),
            token_ids: row.tokens,
            finish_reason: reason,
        };
        match on_done(row.request, completion) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(GenerateError::Stopped),
        }
    };
    // A cache holds its prompt and every token it may generate, allocated up front.
    let cache_bytes =
        |request: usize| (requests[request].ids.len() + s.max_new_tokens) as u64 * model.kv_bytes_per_token();
    // The new row's cache, beside the rows' and the prompt's it is copied from (held until
    // the prompt's last sample has its row).
    let fits = |rows: &[Row], request: usize| {
        let Some(budget) = s.kv_budget else { return true };
        let held: u64 = rows.iter().map(|r| cache_bytes(r.request)).sum();
        rows.is_empty() || held + 2 * cache_bytes(request) <= budget
    };
    loop {
        while rows.len() < s.batch_size.max(1) {
            let Some(&(request, sample)) = waiting.peek() else {
                break;
            };
            if !fits(&rows, request) {
                break;
            }
            waiting.next();
            if prefix.as_ref().is_none_or(|p| p.request != request) {
                let ids = requests[request].ids;
                let mut cache = model.new_cache(1, (ids.len() + s.max_new_tokens) as i64);
                let logits = model
                    .forward(&Tensor::from_slice(ids).unsqueeze(0), &mut cache)?
                    .select(1, -1);
                prefix = Some(Prefix { request, cache, logits });
            }
            let p = prefix.as_ref().expect("prefilled above");
            let row = Row {
                request,
                sample,
                tokens: Vec::new(),
                rng: sample_rng(s.seed, requests[request].key, sample as u64),
                cache: p.cache.repeat(1),
                logits: p.logits.shallow_clone(),
            };
            if s.max_new_tokens == 0 {
                finish(row, FinishReason::Length, None, on_done)?;
            } else {
                rows.push(row);
            }
            // Its cache is no longer needed once the prompt's last sample has a row.
            if waiting.peek().is_none_or(|&(next, _)| next != request) {
                prefix = None;
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let logits = Tensor::cat(&rows.iter().map(|r| &r.logits).collect::<Vec<_>>(), 0);
        let mut rngs: Vec<&mut rand::rngs::StdRng> = rows.iter_mut().map(|r| &mut r.rng).collect();
        let next = next_tokens(&logits, s.temperature, s.top_p, &mut rngs);
        let mut going = Vec::with_capacity(rows.len());
        for (mut row, token) in std::mem::take(&mut rows).into_iter().zip(next) {
            let end = ending(tokenizer, requests[row.request].end_of, s, eos, &row.tokens, token)?;
            if !eos.contains(&token) {
                row.tokens.push(token);
            }
            match end {
                Some((reason, text)) => finish(row, reason, text, on_done)?,
                None => going.push(row),
            }
        }
        rows = going;
        if rows.is_empty() {
            continue;
        }
        let ids: Vec<i64> = rows
            .iter()
            .map(|r| *r.tokens.last().expect("a token was drawn"))
            .collect();
        let mut caches: Vec<&mut KvCache> = rows.iter_mut().map(|r| &mut r.cache).collect();
        let out = model.decode_rows(&ids, &mut caches)?;
        for (i, row) in rows.iter_mut().enumerate() {
            row.logits = out.narrow(0, i as i64, 1);
        }
    }
}

/// Whether drawing `token` after `tokens` ends a sample, why, and its text when a stop string or
/// the end rule cut it. End of sequence is not part of the sample; a stop string's token is.
fn ending(
    tokenizer: &TextTokenizer,
    end_of: Option<EndOf>,
    s: &Sampling,
    eos: &[i64],
    tokens: &[i64],
    token: i64,
) -> Result<Option<(FinishReason, Option<String>)>, GenerateError> {
    if eos.contains(&token) {
        return Ok(Some((FinishReason::Stop, None)));
    }
    if !s.stop.is_empty() || end_of.is_some() {
        let mut with = tokens.to_vec();
        with.push(token);
        let text = tokenizer.decode(&with)?;
        let cut = s
            .stop
            .iter()
            .filter_map(|st| text.find(st.as_str()))
            .chain(end_of.and_then(|f| f(&text)))
            .min();
        if let Some(at) = cut {
            return Ok(Some((FinishReason::Stop, Some(text[..at].to_string()))));
        }
    }
    Ok((tokens.len() + 1 == s.max_new_tokens).then_some((FinishReason::Length, None)))
}

/// Generates `s.n` completions of `prompt`, in sample order; `prompt_key` identifies the prompt
/// in the seeds.
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

/// [`generate`], where `end_of(text)` may also end a sample (see [`Request::end_of`]).
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
    let request = Request {
        ids: prompt,
        key: prompt_key,
        end_of,
    };
    let mut done = Vec::with_capacity(s.n);
    generate_many(model, tokenizer, &[request], s, eos, &mut |_, c| {
        done.push(c);
        on_sample_done();
        ControlFlow::Continue(())
    })?;
    done.sort_by_key(|c| c.sample);
    Ok(done)
}
