//! `secvec serve`: the model stack behind an OpenAI-compatible HTTP endpoint
//! (`/v1/chat/completions`, `/v1/completions`, `/v1/models`, and `/metrics`), so any client of
//! that protocol, and secvec's own LLM stages, can use a local model. Concurrent requests share
//! one continuous batch (connections are read and written on their own threads, see `http`);
//! a request's answer does not depend on what decodes beside it, and the same request with the
//! same `seed` gives the same answer.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::ops::ControlFlow;
use std::sync::mpsc::{Receiver, Sender};

use anyhow::Context;
use secvec_llm::wire::{
    ChatChoice, ChatRequest, ChatResponse, CompletionChoice, CompletionRequest, CompletionResponse, Message, ModelCard,
    ModelList, Prompt, SamplingFields, Stop, Usage,
};
use secvec_model::chat_template::ChatTemplate;
use secvec_model::generate::{Batcher, Batching, Completion, FinishReason, Sampling};
use secvec_model::load_for_inference;
use secvec_model::tokenizer::TextTokenizer;
use secvec_model::transformer::Transformer;
use secvec_stage::worker::ServeRequest;
use secvec_stages::generate::check_sampling;

use crate::http::{self, Job, Response};
use secvec_model::device::kind_of;

struct Server {
    name: String,
    model: Transformer,
    tokenizer: TextTokenizer,
    template: Option<ChatTemplate>,
    context: usize,
    /// Rows decoded together and the KV cache they may hold, all requests together.
    batching: Batching,
}

/// An error answer: HTTP status and the message clients see.
struct Refusal(u16, String);

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

const DEFAULT_MAX_TOKENS: usize = 512;

/// The default KV budget: SmolLM2-135M's caches for 10 samples and the prompt of its whole
/// 8192-token context in f32, or 75k tokens of a 7B Qwen2.5 in bf16.
const DEFAULT_KV_BUDGET: u64 = 4 << 30;

/// The most samples one request may ask for (prompts × `n`).
const MAX_SAMPLES: usize = 1024;

/// The default of `--batch-size`.
const DEFAULT_BATCH_SIZE: usize = 64;

/// Which endpoint a request came to, and so the shape of its answer.
#[derive(Clone, Copy)]
enum Endpoint {
    Chat,
    Completions,
}

/// A request whose prompts are sampling.
struct Work {
    endpoint: Endpoint,
    /// Names the response (`chatcmpl-…`, `cmpl-…`).
    id: String,
    /// Each prompt (at least one) and how to sample it (alike but for the room each leaves in
    /// the context).
    prompts: Vec<(Vec<i64>, Sampling)>,
}

/// A request being answered: its choices, filled as its samples finish.
struct Pending {
    endpoint: Endpoint,
    id: String,
    prompt_tokens: usize,
    n: usize,
    choices: Vec<Option<Completion>>,
    left: usize,
    reply: Sender<Response>,
}

/// What `/metrics` reports (Prometheus' text format).
#[derive(Default)]
struct Metrics {
    requests: u64,
    decode_steps: u64,
    rows_decoded: u64,
    most_rows: usize,
    completion_tokens: u64,
}

impl Metrics {
    fn text(&self) -> String {
        let mut out = String::new();
        for (name, help, kind, value) in [
            (
                "secvec_requests_total",
                "Generation requests accepted.",
                "counter",
                self.requests,
            ),
            (
                "secvec_decode_steps_total",
                "Decoding steps of the shared batch.",
                "counter",
                self.decode_steps,
            ),
            (
                "secvec_rows_decoded_total",
                "Rows summed over decoding steps.",
                "counter",
                self.rows_decoded,
            ),
            (
                "secvec_rows_max",
                "The most rows one decoding step has held.",
                "gauge",
                self.most_rows as u64,
            ),
            (
                "secvec_completion_tokens_total",
                "Tokens generated.",
                "counter",
                self.completion_tokens,
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
        }
        out
    }
}

impl Server {
    fn sampling(&self, prompt_len: usize, o: &SamplingFields) -> Result<Sampling, Refusal> {
        // A chat template may render nothing at all; the batch needs a token to start from.
        if prompt_len == 0 {
            return Err(refuse(400, "a prompt is empty after tokenisation"));
        }
        let room = self.context.saturating_sub(prompt_len);
        if room == 0 {
            return Err(refuse(
                400,
                format!(
                    "the prompt has {prompt_len} tokens; the model's context is {}",
                    self.context
                ),
            ));
        }
        // Asked for (a count above 0, or `true`), they cannot be given: refused, not left out.
        if o.logprobs
            .as_ref()
            .is_some_and(|v| !(v.is_null() || *v == false || *v == 0))
        {
            return Err(refuse(
                400,
                "`logprobs` are not returned by secvec serve; leave them out of the request",
            ));
        }
        let n = o.n.unwrap_or(1);
        if n == 0 || n > 128 {
            return Err(refuse(400, format!("`n` is {n}; ask for 1 to 128 choices")));
        }
        let max_new_tokens = o.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).min(room);
        self.check_kv_budget(prompt_len + max_new_tokens)?;
        let (temperature, top_p) = (o.temperature.unwrap_or(1.0), o.top_p.unwrap_or(1.0));
        check_sampling(temperature, top_p).map_err(|e| refuse(400, e.to_string()))?;
        Ok(Sampling {
            n,
            temperature,
            top_p,
            max_new_tokens,
            stop: o.stop.as_ref().map(Stop::list).unwrap_or_default(),
            seed: o.seed.unwrap_or(0),
        })
    }

    /// A sample's KV cache, `tokens` long (prompt and completion), is allocated when it starts,
    /// beside the prompt's it is copied from; the batch admits samples while theirs fit the
    /// budget, so a sample that could never fit is refused.
    fn check_kv_budget(&self, tokens: usize) -> Result<(), Refusal> {
        let budget = self.batching.kv_budget.unwrap_or(u64::MAX);
        let per_token = self.model.kv_bytes_per_token();
        let need = per_token.saturating_mul(2 * tokens as u64);
        if need <= budget {
            return Ok(());
        }
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        Err(refuse(
            400,
            format!(
                "one sample of this request needs {:.2} MiB of KV cache (its own and the prompt's it starts \
                 from, {tokens} tokens each of prompt and `max_tokens`, {per_token} bytes a token), over the \
                 server's budget of {:.2} MiB; ask for fewer `max_tokens`",
                mib(need),
                mib(budget)
            ),
        ))
    }

    fn check_model(&self, asked: &str) -> Result<(), Refusal> {
        if asked == self.name {
            Ok(())
        } else {
            Err(refuse(
                404,
                format!("this server serves `{}`, not `{asked}`", self.name),
            ))
        }
    }

    fn chat(&self, body: &str) -> Result<Work, Refusal> {
        let r: ChatRequest = serde_json::from_str(body).map_err(|e| refuse(400, format!("bad request body: {e}")))?;
        self.check_model(&r.model)?;
        if r.sampling.stream == Some(true) {
            return Err(refuse(400, "streaming is not supported; send `stream: false`"));
        }
        let template = self
            .template
            .as_ref()
            .ok_or_else(|| refuse(400, "the model has no chat template; use /v1/completions"))?;
        let messages = serde_json::to_value(&r.messages).expect("messages serialise");
        let prompt = template
            .render(&messages, true)
            .map_err(|e| refuse(400, e.to_string()))?;
        let ids = self
            .tokenizer
            .encode_continuation(&prompt)
            .map_err(|e| refuse(500, e.to_string()))?;
        let sampling = self.sampling(ids.len(), &r.sampling)?;
        Ok(Work {
            endpoint: Endpoint::Chat,
            id: format!("chatcmpl-{}", response_id(body)),
            prompts: vec![(ids, sampling)],
        })
    }

    fn completions(&self, body: &str) -> Result<Work, Refusal> {
        let r: CompletionRequest =
            serde_json::from_str(body).map_err(|e| refuse(400, format!("bad request body: {e}")))?;
        self.check_model(&r.model)?;
        if r.sampling.stream == Some(true) {
            return Err(refuse(400, "streaming is not supported; send `stream: false`"));
        }
        let texts = match &r.prompt {
            Prompt::One(p) => vec![p.clone()],
            Prompt::Many(v) => v.clone(),
        };
        // Every sample queues at once: a body's worth of tiny prompts must not become millions.
        let samples = texts.len().saturating_mul(r.sampling.n.unwrap_or(1));
        if texts.is_empty() || samples > MAX_SAMPLES {
            return Err(refuse(
                400,
                format!(
                    "the request asks for {samples} samples ({} prompts × `n`); ask for 1 to {MAX_SAMPLES}",
                    texts.len()
                ),
            ));
        }
        let mut prompts = Vec::with_capacity(texts.len());
        for text in &texts {
            let ids = self.tokenizer.encode(text).map_err(|e| refuse(500, e.to_string()))?;
            let sampling = self.sampling(ids.len(), &r.sampling)?;
            prompts.push((ids, sampling));
        }
        Ok(Work {
            endpoint: Endpoint::Completions,
            id: format!("cmpl-{}", response_id(body)),
            prompts,
        })
    }

    fn models(&self) -> String {
        serde_json::to_string(&ModelList {
            object: "list".into(),
            data: vec![ModelCard {
                id: self.name.clone(),
                object: "model".into(),
                created: 0,
                owned_by: "secvec".into(),
            }],
        })
        .expect("lists serialise")
    }

    /// The answer now, or the work to sample for it.
    fn take(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        metrics: &Metrics,
    ) -> Result<Result<Response, Work>, Refusal> {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        let text = || std::str::from_utf8(body).map_err(|e| refuse(400, format!("the request body is not UTF-8: {e}")));
        match (method, path) {
            ("GET", "/v1/models") => Ok(Ok(Response::json(self.models()))),
            ("GET", "/metrics") => Ok(Ok(Response::text(metrics.text()))),
            ("POST", "/v1/chat/completions") => self.chat(text()?).map(Err),
            ("POST", "/v1/completions") => self.completions(text()?).map(Err),
            _ => Err(refuse(404, format!("no route for {method} {path}"))),
        }
    }

    /// Answers requests for as long as they can arrive: those that sample join the shared
    /// batch as they come, and each is answered when its last sample finishes.
    fn run(&self, jobs: Receiver<Job>) {
        let eos = &self.model.config.eos_token_ids;
        let mut batcher = Batcher::new(&self.model, &self.tokenizer, eos, self.batching);
        let mut pending: BTreeMap<usize, Pending> = BTreeMap::new();
        // The batch's jobs: which request, and which of its prompts.
        let mut of_job: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        let mut metrics = Metrics::default();
        let mut requests = 0usize;
        loop {
            // Idle, wait for a request; busy, take what has arrived and decode on.
            let first = if batcher.is_idle() {
                match jobs.recv() {
                    Ok(job) => Some(job),
                    Err(_) => return,
                }
            } else {
                None
            };
            for (request, reply) in first.into_iter().chain(jobs.try_iter()) {
                let work = match self.take(&request.method, &request.path, &request.body, &metrics) {
                    Ok(Ok(response)) => {
                        let _ = reply.send(response);
                        continue;
                    }
                    Err(Refusal(status, message)) => {
                        let _ = reply.send(Response::error(status, &message));
                        continue;
                    }
                    Ok(Err(work)) => work,
                };
                metrics.requests += 1;
                let r = requests;
                requests += 1;
                let (n, count) = (work.prompts[0].1.n, work.prompts.len());
                let prompt_tokens = work.prompts.iter().map(|(ids, _)| ids.len()).sum();
                for (k, (ids, sampling)) in work.prompts.into_iter().enumerate() {
                    // The prompt's identity in the sampling seeds: the same request draws the
                    // same tokens.
                    let job = batcher
                        .push(&ids, prompt_key(&ids), None, sampling)
                        .expect("`sampling` refuses empty prompts");
                    of_job.insert(job, (r, k));
                }
                pending.insert(
                    r,
                    Pending {
                        endpoint: work.endpoint,
                        id: work.id,
                        prompt_tokens,
                        n,
                        choices: vec![None; count * n],
                        left: count * n,
                        reply,
                    },
                );
            }
            if batcher.is_idle() {
                continue;
            }
            let stepped = batcher.step(&mut |job, c| {
                let (r, k) = of_job[&job];
                let p = pending.get_mut(&r).expect("a job's request waits for its samples");
                metrics.completion_tokens += c.completion_tokens as u64;
                let slot = k * p.n + c.sample;
                p.choices[slot] = Some(c);
                p.left -= 1;
                if p.left == 0 {
                    let p = pending.remove(&r).expect("looked up above");
                    of_job.retain(|_, (request, _)| *request != r);
                    let (reply, body) = self.respond(p);
                    let _ = reply.send(Response::json(body));
                }
                ControlFlow::Continue(())
            });
            match stepped {
                Ok(rows) => {
                    metrics.decode_steps += 1;
                    metrics.rows_decoded += rows as u64;
                    metrics.most_rows = metrics.most_rows.max(rows);
                }
                Err(e) => {
                    // The batch's state cannot be trusted after a failed step: every request in it
                    // hears why, and the next ones start a new batch.
                    for (_, p) in std::mem::take(&mut pending) {
                        let _ = p.reply.send(Response::error(500, &e.to_string()));
                    }
                    of_job.clear();
                    batcher = Batcher::new(&self.model, &self.tokenizer, eos, self.batching);
                }
            }
        }
    }

    /// Where the answer to a request whose samples have all finished goes, and the answer.
    fn respond(&self, p: Pending) -> (Sender<Response>, String) {
        let completions: Vec<Completion> = p
            .choices
            .into_iter()
            .map(|c| c.expect("every sample finished"))
            .collect();
        let completion_tokens = completions.iter().map(|c| c.completion_tokens).sum();
        let usage = Usage {
            prompt_tokens: p.prompt_tokens,
            completion_tokens,
            total_tokens: p.prompt_tokens + completion_tokens,
        };
        let body = match p.endpoint {
            Endpoint::Chat => serde_json::to_string(&ChatResponse {
                id: p.id,
                object: "chat.completion".into(),
                created: now(),
                model: self.name.clone(),
                choices: completions
                    .into_iter()
                    .map(|c| ChatChoice {
                        index: c.sample,
                        message: Message {
                            role: "assistant".into(),
                            content: c.text,
                        },
                        finish_reason: Some(finish(c.finish_reason)),
                    })
                    .collect(),
                usage: Some(usage),
            }),
            Endpoint::Completions => serde_json::to_string(&CompletionResponse {
                id: p.id,
                object: "text_completion".into(),
                created: now(),
                model: self.name.clone(),
                choices: completions
                    .into_iter()
                    .enumerate()
                    .map(|(index, c)| CompletionChoice {
                        index,
                        text: c.text,
                        finish_reason: Some(finish(c.finish_reason)),
                        logprobs: None,
                    })
                    .collect(),
                usage: Some(usage),
            }),
        }
        .expect("responses serialise");
        (p.reply, body)
    }
}

/// A prompt's identity in its samples' seeds.
fn prompt_key(ids: &[i64]) -> u64 {
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    u64::from_le_bytes(blake3::hash(&bytes).as_bytes()[..8].try_into().expect("8 bytes"))
}

fn finish(reason: FinishReason) -> String {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
    .into()
}

fn response_id(body: &str) -> String {
    blake3::hash(body.as_bytes()).to_hex()[..24].to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Loads the model, prints `listening on http://ADDR/v1` once it can take requests, and serves
/// until killed.
pub fn serve(args: ServeRequest) -> anyhow::Result<()> {
    let (model, tokenizer) = load_for_inference(
        &args.model,
        args.adapter.as_deref(),
        &args.device,
        kind_of(args.dtype),
        true,
    )
    .with_context(|| format!("loading {}", args.model.display()))?;
    let template = match ChatTemplate::load(&args.model) {
        Ok(t) => Some(t),
        Err(secvec_model::chat_template::ChatTemplateError::Missing { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let name = args.name.clone().unwrap_or_else(|| {
        args.model
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_string_lossy().to_string())
    });
    let context = model.config.max_position_embeddings as usize;
    let server = Server {
        name,
        model,
        tokenizer,
        template,
        context,
        batching: Batching {
            batch_size: args.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
            kv_budget: Some(args.kv_budget_mib.map_or(DEFAULT_KV_BUDGET, |m| m << 20)),
        },
    };
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}/v1 (model `{}`)", server.name);
    use std::io::Write;
    std::io::stdout().flush()?;
    let (queue, jobs) = std::sync::mpsc::channel();
    std::thread::spawn(move || http::accept(listener, http::Limits::default(), queue));
    // Generation stays on this thread, whose stack is the main thread's.
    server.run(jobs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::path::Path;
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use super::*;

    /// The fixture model served on a free port; generation runs on its own thread, as on the
    /// main thread in `serve`.
    fn start(limits: http::Limits, kv_budget: u64) -> SocketAddr {
        let (server, queue, jobs) = tiny(kv_budget);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || http::accept(listener, limits, queue));
        std::thread::spawn(move || server.run(jobs));
        addr
    }

    /// The fixture model's server and the queue its requests come through.
    fn tiny(kv_budget: u64) -> (Server, Sender<Job>, Receiver<Job>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/fixtures/llama");
        let (model, tokenizer) = load_for_inference(&dir, None, "cpu", tch::Kind::Float, true).unwrap();
        let server = Server {
            name: "tiny".into(),
            context: model.config.max_position_embeddings as usize,
            model,
            tokenizer,
            template: None,
            batching: Batching {
                batch_size: DEFAULT_BATCH_SIZE,
                kv_budget: Some(kv_budget),
            },
        };
        let (queue, jobs) = std::sync::mpsc::channel();
        (server, queue, jobs)
    }

    fn post(path: &str, body: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// Status and JSON body of each response in `text`.
    fn parse(mut text: &str) -> Vec<(u16, Value)> {
        let mut out = Vec::new();
        while let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |n| n.parse().unwrap());
            out.push((status, serde_json::from_str(&rest[..length]).unwrap_or(Value::Null)));
            text = &rest[length..];
        }
        out
    }

    /// Sends `raw` on a new connection and reads until the server closes it.
    fn exchange(addr: SocketAddr, raw: &str) -> Vec<(u16, Value)> {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        parse(&text)
    }

    const SMALL: &str = r#"{"model": "tiny", "prompt": "def f(", "max_tokens": 4, "temperature": 0}"#;

    #[test]
    fn a_stalled_client_holds_only_its_own_connection() {
        let limits = http::Limits {
            request: Duration::from_secs(5),
            ..http::Limits::default()
        };
        let addr = start(limits, DEFAULT_KV_BUDGET);
        // Declares 100000 bytes of body and sends one.
        let mut stalled = TcpStream::connect(addr).unwrap();
        stalled
            .write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let asked = Instant::now();
        let answers = exchange(addr, &post("/v1/completions", SMALL));
        let waited = asked.elapsed();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, 200, "{}", answers[0].1);
        assert_eq!(answers[0].1["choices"].as_array().map(Vec::len), Some(1));
        // Well before the stalled request's deadline, which an answer queued behind it would wait for.
        assert!(waited < Duration::from_secs(3), "the answer took {waited:?}");
        // The stalled client hears why once its time is up, and its connection is closed.
        stalled.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut text = String::new();
        stalled.read_to_string(&mut text).unwrap();
        let answers = parse(&text);
        assert_eq!(answers[0].0, 408, "{text}");
        assert_eq!(
            answers[0].1["error"]["message"],
            "the request did not arrive within 5 s"
        );
    }

    #[test]
    fn the_kv_budget_bounds_the_samples_held_at_once_and_refuses_a_sample_that_never_fits() {
        // The fixture's cache takes 256 bytes a token: one sample of its whole 128-token
        // context and the prompt's cache it starts from take 64 KiB.
        let addr = start(http::Limits::default(), 32 << 10);
        let huge = r#"{"model": "tiny", "prompt": "def f(", "max_tokens": 1000000000}"#;
        let answers = exchange(addr, &post("/v1/completions", huge));
        assert_eq!(answers[0].0, 400);
        let message = answers[0].1["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("one sample of this request needs 0.06 MiB of KV cache (its own and the prompt's it starts from, 128 tokens")
                && message.contains("over the server's budget of 0.03 MiB"),
            "{message}"
        );
        // 40 samples of 4 prompt tokens and 12 new ones, 4 KiB each: at most 7 fit beside the
        // prompt's cache, so they take turns, and every one is answered.
        let many = r#"{"model": "tiny", "prompt": "def f(", "n": 40, "max_tokens": 12, "seed": 1}"#;
        let answers = exchange(addr, &post("/v1/completions", many));
        assert_eq!(answers[0].0, 200, "{}", answers[0].1);
        assert_eq!(answers[0].1["choices"].as_array().map(Vec::len), Some(40));
        let most = metric(addr, "secvec_rows_max");
        assert!((2..=7).contains(&most), "{most} rows at once");
    }

    /// A value `/metrics` reports.
    fn metric(addr: SocketAddr, name: &str) -> u64 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        assert!(text.contains("Content-Type: text/plain; version=0.0.4"), "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    }

    /// Sends a request straight to the server's queue and waits for its answer.
    fn ask(queue: &Sender<Job>, method: &str, path: &str, body: &str) -> std::sync::mpsc::Receiver<Response> {
        let (reply, answer) = std::sync::mpsc::channel();
        let request = http::Request {
            method: method.into(),
            path: path.into(),
            body: body.as_bytes().to_vec(),
        };
        queue.send((request, reply)).unwrap();
        answer
    }

    #[test]
    fn concurrent_requests_decode_in_one_batch_and_get_the_answers_they_get_alone() {
        let (server, queue, jobs) = tiny(DEFAULT_KV_BUDGET);
        let prompts = [
            "def f(",
            "import os\n",
            "int main(",
            "x = [",
            "for i in",
            "#include",
            "class A",
            "return ",
        ];
        let bodies: Vec<String> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                serde_json::json!({"model": "tiny", "prompt": p, "n": 2, "max_tokens": 24, "temperature": 0.8, "seed": i})
                    .to_string()
            })
            .collect();
        // All queued before the server starts: they arrive together, as from 8 clients at once.
        let waiting: Vec<_> = bodies
            .iter()
            .map(|b| ask(&queue, "POST", "/v1/completions", b))
            .collect();
        std::thread::spawn(move || server.run(jobs));
        let json = |r: Response| -> Value {
            assert_eq!(r.status, 200, "{}", r.body);
            serde_json::from_str(&r.body).unwrap()
        };
        let wait = Duration::from_secs(60);
        let together: Vec<Value> = waiting
            .into_iter()
            .map(|a| json(a.recv_timeout(wait).unwrap()))
            .collect();
        let metrics = ask(&queue, "GET", "/metrics", "").recv_timeout(wait).unwrap().body;
        assert!(
            metrics.contains("\nsecvec_rows_max 16\n"),
            "all 8 requests' samples in one batch:\n{metrics}"
        );
        for (body, t) in bodies.iter().zip(&together) {
            let alone = json(ask(&queue, "POST", "/v1/completions", body).recv_timeout(wait).unwrap());
            assert_eq!(alone["choices"], t["choices"], "{body}");
            assert_eq!(alone["usage"], t["usage"], "{body}");
        }
        let texts: std::collections::BTreeSet<_> = together
            .iter()
            .flat_map(|t| t["choices"].as_array().unwrap().iter().map(|c| c["text"].to_string()))
            .collect();
        assert!(
            texts.len() > 8,
            "different prompts and seeds give different samples: {texts:?}"
        );
    }

    #[test]
    fn a_prompt_that_tokenises_to_nothing_is_refused_and_the_server_goes_on() {
        // A chat template that renders nothing at all.
        let dir = std::env::temp_dir().join(format!("secvec-empty-template-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"chat_template": "{% if false %}x{% endif %}"}"#,
        )
        .unwrap();
        let (mut server, queue, jobs) = tiny(DEFAULT_KV_BUDGET);
        server.template = Some(ChatTemplate::load(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        std::thread::spawn(move || server.run(jobs));
        let wait = Duration::from_secs(60);
        let chat = r#"{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}"#;
        let empty = r#"{"model": "tiny", "prompt": "", "max_tokens": 4}"#;
        for (path, body) in [("/v1/chat/completions", chat), ("/v1/completions", empty)] {
            let answer = ask(&queue, "POST", path, body).recv_timeout(wait).unwrap();
            assert_eq!(answer.status, 400, "{path}: {}", answer.body);
            assert!(
                answer.body.contains("a prompt is empty after tokenisation"),
                "{}",
                answer.body
            );
        }
        // No prompts, or more samples than a request may queue, are refused as well.
        let many = serde_json::json!({"model": "tiny", "prompt": vec!["x"; 9], "n": 128}).to_string();
        for body in [r#"{"model": "tiny", "prompt": [], "max_tokens": 4}"#, many.as_str()] {
            let answer = ask(&queue, "POST", "/v1/completions", body).recv_timeout(wait).unwrap();
            assert_eq!(answer.status, 400, "{}", answer.body);
            assert!(answer.body.contains("ask for 1 to 1024"), "{}", answer.body);
        }
        let answer = ask(&queue, "POST", "/v1/completions", SMALL)
            .recv_timeout(wait)
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
    }

    #[test]
    fn connections_keep_alive_and_what_cannot_be_read_is_refused_before_reading_it() {
        let addr = start(http::Limits::default(), DEFAULT_KV_BUDGET);
        // Two requests on one connection; the second asks to close it.
        let models = "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n";
        let answers = exchange(addr, &format!("{models}{}", post("/v1/completions", SMALL)));
        assert_eq!(answers.iter().map(|a| a.0).collect::<Vec<_>>(), [200, 200]);
        assert_eq!(answers[0].1["data"][0]["id"], "tiny");
        // A client that waits for 100 Continue gets it before its answer.
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let raw = post("/v1/completions", SMALL).replacen("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n", 1);
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        stream.write_all(format!("{head}\r\n\r\n").as_bytes()).unwrap();
        let mut interim = [0u8; 25];
        stream.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(body.as_bytes()).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        assert_eq!(parse(&text)[0].0, 200, "{text}");
        // Bodies over the limit, and bodies without a length, are refused unread.
        let big = "POST /v1/completions HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n";
        assert_eq!(exchange(addr, big)[0].0, 413);
        let chunked = "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(exchange(addr, chunked)[0].0, 501);
        let long = format!("GET /v1/models HTTP/1.1\r\nX: {}\r\n\r\n", "x".repeat(70_000));
        assert_eq!(exchange(addr, &long)[0].0, 431);
    }
}
