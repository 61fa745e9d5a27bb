//! Sampling completions with continuous batching: every prompt's samples share one decoding
//! loop of up to `batch_size` rows. A prompt is prefilled once when its first sample is
//! admitted and each of its samples continues from a copy of that cache; a sample that
//! finishes leaves and the next waiting one takes its row at once, so long and short samples
//! of different prompts mix without padding. Every sample draws from its own seeded stream and
//! its logits do not depend on the rows beside it ([`Transformer::decode_rows`]), so a sample
//! is the same tokens whatever the batch size, the other prompts and their order. Prompts may
//! join while others decode ([`Batcher`]), each sampled its own way.

pub use secvec_artifacts::samples::FinishReason;
use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;

use serde::Serialize;
use tch::Tensor;

use super::sampling::{next_tokens, sample_rng};
use super::tokenizer::{TextTokenizer, TokenizerError};
use super::transformer::{KvCache, ModelError, Transformer};

/// How one prompt is sampled.
#[derive(Clone, Debug)]
pub struct Sampling {
    pub n: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
    pub seed: u64,
}

/// How many samples, of any prompts, decode together.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Rows decoded together.
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
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub ids: &'a [i64],
    /// The prompt's identity in every sample's random stream: give the same prompt the same key
    /// wherever it sits among the others.
    pub key: u64,
    /// May end a sample: the byte offset where its text is complete (e.g. the end of the
    /// function a scenario's prefix opened), if it is yet.
    pub end_of: Option<EndOf<'a>>,
}

impl<'a> Request<'a> {
    /// A prompt whose samples end only by the sampling's own rules.
    pub fn new(ids: &'a [i64], key: u64) -> Self {
        Request { ids, key, end_of: None }
    }
}

impl Sampling {
    /// One greedy sample of up to `max_new_tokens`, ended by nothing but EOS.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Sampling {
            n: 1,
            temperature: 0.0,
            top_p: 1.0,
            max_new_tokens,
            stop: vec![],
            seed: 0,
        }
    }
}

impl Batching {
    /// Up to `batch_size` rows, however much cache they hold.
    pub fn rows(batch_size: usize) -> Self {
        Batching {
            batch_size,
            kv_budget: None,
        }
    }
}

/// A prompt being sampled.
struct Job<'a> {
    ids: Vec<i64>,
    key: u64,
    end_of: Option<EndOf<'a>>,
    s: Sampling,
    /// Its samples not finished yet.
    left: usize,
}

/// A sample being decoded.
struct Row {
    job: usize,
    sample: usize,
    tokens: Vec<i64>,
    rng: rand::rngs::StdRng,
    cache: KvCache,
    /// `[1, vocab]`: the distribution of its next token.
    logits: Tensor,
}

/// A prompt prefilled for the samples still to be admitted.
struct Prefix {
    job: usize,
    cache: KvCache,
    logits: Tensor,
}

/// Called as each sample finishes, with its job's number; breaking stops the sampling.
pub type OnDone<'f> = &'f mut dyn FnMut(usize, Completion) -> ControlFlow<()>;

/// The decoding loop, open to prompts arriving while others decode: [`Batcher::push`] queues a
/// prompt's samples, each [`Batcher::step`] admits waiting samples into free rows and draws one
/// token for every row.
pub struct Batcher<'a> {
    model: &'a Transformer,
    tokenizer: &'a TextTokenizer,
    eos: &'a [i64],
    batching: Batching,
    jobs: BTreeMap<usize, Job<'a>>,
    pushed: usize,
    /// Samples to admit, first come first served: (job, sample).
    waiting: VecDeque<(usize, usize)>,
    prefix: Option<Prefix>,
    rows: Vec<Row>,
}

impl<'a> Batcher<'a> {
    pub fn new(model: &'a Transformer, tokenizer: &'a TextTokenizer, eos: &'a [i64], batching: Batching) -> Self {
        Batcher {
            model,
            tokenizer,
            eos,
            batching,
            jobs: BTreeMap::new(),
            pushed: 0,
            waiting: VecDeque::new(),
            prefix: None,
            rows: Vec::new(),
        }
    }

    /// Queues `s.n` samples of the prompt `ids` (see [`Request`] for `key` and `end_of`); its
    /// completions are reported under the returned job number (0, 1, … in the order of pushing).
    pub fn push(
        &mut self,
        ids: &[i64],
        key: u64,
        end_of: Option<EndOf<'a>>,
        s: Sampling,
    ) -> Result<usize, GenerateError> {
        let job = self.pushed;
        if ids.is_empty() {
            return Err(GenerateError::EmptyPrompt(job));
        }
        self.pushed += 1;
        if s.n > 0 {
            self.waiting.extend((0..s.n).map(|k| (job, k)));
            let job_data = Job {
                ids: ids.to_vec(),
                key,
                end_of,
                left: s.n,
                s,
            };
            self.jobs.insert(job, job_data);
        }
        Ok(job)
    }

    /// Whether no sample is decoding or waiting.
    pub fn is_idle(&self) -> bool {
        self.rows.is_empty() && self.waiting.is_empty()
    }

    /// Rows decoding now.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Admits what fits, then draws one token for every row (and decodes it unless the row
    /// finished); `on_done` hears of every sample that finished. Returns the rows drawn for.
    pub fn step(&mut self, on_done: OnDone) -> Result<usize, GenerateError> {
        let _guard = tch::no_grad_guard();
        self.admit(on_done)?;
        let drawn = self.rows.len();
        if drawn == 0 {
            return Ok(0);
        }
        let next = self.draw();
        let mut going = Vec::with_capacity(self.rows.len());
        for (mut row, token) in std::mem::take(&mut self.rows).into_iter().zip(next) {
            let job = &self.jobs[&row.job];
            let end = ending(self.tokenizer, job.end_of, &job.s, self.eos, &row.tokens, token)?;
            if !self.eos.contains(&token) {
                row.tokens.push(token);
            }
            match end {
                Some((reason, text)) => self.finish(row, reason, text, on_done)?,
                None => going.push(row),
            }
        }
        self.rows = going;
        if self.rows.is_empty() {
            return Ok(drawn);
        }
        let ids: Vec<i64> = self
            .rows
            .iter()
            .map(|r| *r.tokens.last().expect("a token was drawn"))
            .collect();
        let mut caches: Vec<&mut KvCache> = self.rows.iter_mut().map(|r| &mut r.cache).collect();
        let out = self.model.decode_rows(&ids, &mut caches)?;
        for (i, row) in self.rows.iter_mut().enumerate() {
            row.logits = out.narrow(0, i as i64, 1);
        }
        Ok(drawn)
    }

    /// A cache holds its prompt and every token it may generate, allocated up front.
    fn cache_bytes(&self, job: usize) -> u64 {
        let j = &self.jobs[&job];
        (j.ids.len() + j.s.max_new_tokens) as u64 * self.model.kv_bytes_per_token()
    }

    /// The new row's cache fits beside the rows' and the prompt's it is copied from (held
    /// until the prompt's last sample has its row).
    fn fits(&self, job: usize) -> bool {
        let Some(budget) = self.batching.kv_budget else {
            return true;
        };
        let held: u64 = self.rows.iter().map(|r| self.cache_bytes(r.job)).sum();
        self.rows.is_empty() || held + 2 * self.cache_bytes(job) <= budget
    }

    fn admit(&mut self, on_done: OnDone) -> Result<(), GenerateError> {
        while self.rows.len() < self.batching.batch_size.max(1) {
            let Some(&(job, sample)) = self.waiting.front() else {
                break;
            };
            if !self.fits(job) {
                break;
            }
            self.waiting.pop_front();
            let j = &self.jobs[&job];
            if self.prefix.as_ref().is_none_or(|p| p.job != job) {
                let mut cache = self.model.new_cache(1, (j.ids.len() + j.s.max_new_tokens) as i64);
                let logits = self
                    .model
                    .forward(&Tensor::from_slice(&j.ids).unsqueeze(0), &mut cache)?
                    .select(1, -1);
                self.prefix = Some(Prefix { job, cache, logits });
            }
            let p = self.prefix.as_ref().expect("prefilled above");
            let row = Row {
                job,
                sample,
                tokens: Vec::new(),
                rng: sample_rng(j.s.seed, j.key, sample as u64),
                cache: p.cache.repeat(1),
                logits: p.logits.shallow_clone(),
            };
            let instant = j.s.max_new_tokens == 0;
            // Its cache is no longer needed once the prompt's last sample has a row.
            if self.waiting.front().is_none_or(|&(next, _)| next != job) {
                self.prefix = None;
            }
            if instant {
                self.finish(row, FinishReason::Length, None, on_done)?;
            } else {
                self.rows.push(row);
            }
        }
        Ok(())
    }

    /// Every row's next token; rows sampled alike share one call, whose rows do not depend on
    /// each other.
    fn draw(&mut self) -> Vec<i64> {
        let mut groups: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
        for (i, row) in self.rows.iter().enumerate() {
            let s = &self.jobs[&row.job].s;
            groups
                .entry((s.temperature.to_bits(), s.top_p.to_bits()))
                .or_default()
                .push(i);
        }
        let mut next = vec![0; self.rows.len()];
        for ((temperature, top_p), members) in groups {
            let logits = Tensor::cat(&members.iter().map(|&i| &self.rows[i].logits).collect::<Vec<_>>(), 0);
            let mut rngs: Vec<&mut rand::rngs::StdRng> = self
                .rows
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| members.binary_search(i).is_ok())
                .map(|(_, r)| &mut r.rng)
                .collect();
            let tokens = next_tokens(&logits, f64::from_bits(temperature), f64::from_bits(top_p), &mut rngs);
            for (i, token) in members.into_iter().zip(tokens) {
                next[i] = token;
            }
        }
        next
    }

    fn finish(
        &mut self,
        row: Row,
        reason: FinishReason,
        text: Option<String>,
        on_done: OnDone,
    ) -> Result<(), GenerateError> {
        let text = match text {
            Some(t) => t,
            None => self.tokenizer.decode(&row.tokens)?,
        };
        let job = self
            .jobs
            .get_mut(&row.job)
            .expect("a row's job is kept until its last sample");
        job.left -= 1;
        if job.left == 0 {
            self.jobs.remove(&row.job);
        }
        let completion = Completion {
            sample: row.sample,
            text,
            completion_tokens: row.tokens.len(),
            token_ids: row.tokens,
            finish_reason: reason,
        };
        match on_done(row.job, completion) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(GenerateError::Stopped),
        }
    }
}

/// Samples `s.n` completions of every request, `on_done(request, completion)` as each sample
/// finishes (in no fixed order); `on_done` stops the sampling by breaking.
pub fn generate_many(
    model: &Transformer,
    tokenizer: &TextTokenizer,
    requests: &[Request],
    s: &Sampling,
    batching: Batching,
    eos: &[i64],
    on_done: OnDone,
) -> Result<(), GenerateError> {
    let mut batcher = Batcher::new(model, tokenizer, eos, batching);
    for r in requests {
        batcher.push(r.ids, r.key, r.end_of, s.clone())?;
    }
    while !batcher.is_idle() {
        batcher.step(on_done)?;
    }
    Ok(())
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

/// Generates `s.n` completions of one prompt, in sample order.
pub fn generate(
    model: &Transformer,
    tokenizer: &TextTokenizer,
    request: Request,
    s: &Sampling,
    batching: Batching,
    eos: &[i64],
) -> Result<Vec<Completion>, GenerateError> {
    let mut done = Vec::with_capacity(s.n);
    generate_many(model, tokenizer, &[request], s, batching, eos, &mut |_, c| {
        done.push(c);
        ControlFlow::Continue(())
    })?;
    done.sort_by_key(|c| c.sample);
    Ok(done)
}
