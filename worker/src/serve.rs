//! `secvec serve`: the model stack behind an OpenAI-compatible HTTP endpoint
//! (`/v1/chat/completions`, `/v1/completions`, `/v1/models`), so any client of that protocol,
//! and secvec's own LLM stages, can use a local model. Requests are answered one at a time
//! (connections are read and written on their own threads, see `http`); the same request with
//! the same `seed` gives the same answer.

use std::net::TcpListener;

use anyhow::Context;
use secvec_llm::wire::{
    ChatChoice, ChatRequest, ChatResponse, CompletionChoice, CompletionRequest, CompletionResponse, Message, ModelCard,
    ModelList, Prompt, SamplingFields, Stop, Usage,
};
use secvec_model::chat_template::ChatTemplate;
use secvec_model::generate::{generate, Completion, FinishReason, Sampling};
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
    /// The most bytes one request's KV cache may take.
    kv_budget: u64,
}

/// An error answer: HTTP status and the message clients see.
struct Refusal(u16, String);

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

const DEFAULT_MAX_TOKENS: usize = 512;

/// The default of [`Server::kv_budget`]: SmolLM2-135M's caches for 10 samples and the prompt of
/// its whole 8192-token context in f32, or 75k tokens of a 7B Qwen2.5 in bf16.
const DEFAULT_KV_BUDGET: u64 = 4 << 30;

impl Server {
    fn sampling(&self, prompt_len: usize, o: &SamplingFields) -> Result<Sampling, Refusal> {
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
            .is_some_and(|v| !(v.is_null() || v == &false || v == &0))
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
        self.check_kv_budget(n, prompt_len + max_new_tokens)?;
        let (temperature, top_p) = (o.temperature.unwrap_or(1.0), o.top_p.unwrap_or(1.0));
        check_sampling(temperature, top_p).map_err(|e| refuse(400, e.to_string()))?;
        Ok(Sampling {
            n,
            temperature,
            top_p,
            max_new_tokens,
            stop: o.stop.as_ref().map(Stop::list).unwrap_or_default(),
            seed: o.seed.unwrap_or(0),
            batch_size: n,
            // The whole request fits the budget (checked above).
            kv_budget: None,
        })
    }

    /// Generation allocates a KV cache for the prompt and one per sample, each `tokens` long
    /// (prompt and completion), up front; one that would not fit the budget is refused before.
    fn check_kv_budget(&self, n: usize, tokens: usize) -> Result<(), Refusal> {
        let per_token = self.model.kv_bytes_per_token();
        let need = per_token.saturating_mul((n as u64 + 1) * tokens as u64);
        if need <= self.kv_budget {
            return Ok(());
        }
        let mib = |b: u64| b.div_ceil(1 << 20);
        Err(refuse(
            400,
            format!(
                "this request's KV cache would take {} MiB ({n} samples and the prompt's, {tokens} tokens each \
                 of prompt and `max_tokens`, {per_token} bytes a token), over the server's budget of {} MiB; \
                 ask for fewer samples (`n`) or fewer `max_tokens`",
                mib(need),
                mib(self.kv_budget)
            ),
        ))
    }

    fn complete(&self, ids: &[i64], s: &Sampling) -> Result<Vec<Completion>, Refusal> {
        // The prompt's identity in the sampling seeds: the same request draws the same tokens.
        let key = u64::from_le_bytes(
            blake3::hash(&ids.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>()).as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        );
        generate(
            &self.model,
            &self.tokenizer,
            ids,
            key,
            s,
            &self.model.config.eos_token_ids,
            &mut || {},
        )
        .map_err(|e| refuse(500, e.to_string()))
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

    fn chat(&self, body: &str) -> Result<String, Refusal> {
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
        let s = self.sampling(ids.len(), &r.sampling)?;
        let completions = self.complete(&ids, &s)?;
        let usage = usage(ids.len(), &completions);
        let response = ChatResponse {
            id: format!("chatcmpl-{}", response_id(body)),
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
        };
        Ok(serde_json::to_string(&response).expect("responses serialise"))
    }

    fn completions(&self, body: &str) -> Result<String, Refusal> {
        let r: CompletionRequest =
            serde_json::from_str(body).map_err(|e| refuse(400, format!("bad request body: {e}")))?;
        self.check_model(&r.model)?;
        if r.sampling.stream == Some(true) {
            return Err(refuse(400, "streaming is not supported; send `stream: false`"));
        }
        let prompts = match &r.prompt {
            Prompt::One(p) => vec![p.clone()],
            Prompt::Many(v) => v.clone(),
        };
        let (mut choices, mut prompt_tokens, mut completion_tokens) = (Vec::new(), 0, 0);
        for prompt in &prompts {
            let ids = self.tokenizer.encode(prompt).map_err(|e| refuse(500, e.to_string()))?;
            if ids.is_empty() {
                return Err(refuse(400, "a prompt is empty after tokenisation"));
            }
            let s = self.sampling(ids.len(), &r.sampling)?;
            let completions = self.complete(&ids, &s)?;
            let u = usage(ids.len(), &completions);
            prompt_tokens += u.prompt_tokens;
            completion_tokens += u.completion_tokens;
            for c in completions {
                choices.push(CompletionChoice {
                    index: choices.len(),
                    text: c.text,
                    finish_reason: Some(finish(c.finish_reason)),
                    logprobs: None,
                });
            }
        }
        let response = CompletionResponse {
            id: format!("cmpl-{}", response_id(body)),
            object: "text_completion".into(),
            created: now(),
            model: self.name.clone(),
            choices,
            usage: Some(Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
            }),
        };
        Ok(serde_json::to_string(&response).expect("responses serialise"))
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

    fn answer(&self, method: &str, path: &str, body: &[u8]) -> Result<String, Refusal> {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        let text = || std::str::from_utf8(body).map_err(|e| refuse(400, format!("the request body is not UTF-8: {e}")));
        match (method, path) {
            ("GET", "/v1/models") => Ok(self.models()),
            ("POST", "/v1/chat/completions") => self.chat(text()?),
            ("POST", "/v1/completions") => self.completions(text()?),
            _ => Err(refuse(404, format!("no route for {method} {path}"))),
        }
    }

    /// Answers the queued requests in turn, for as long as requests can arrive.
    fn run(&self, jobs: std::sync::mpsc::Receiver<Job>) {
        for (request, reply) in jobs {
            let response = match self.answer(&request.method, &request.path, &request.body) {
                Ok(body) => Response { status: 200, body },
                Err(Refusal(status, message)) => Response::error(status, &message),
            };
            let _ = reply.send(response);
        }
    }
}

fn usage(prompt: usize, completions: &[Completion]) -> Usage {
    let completion_tokens = completions.iter().map(|c| c.completion_tokens).sum();
    Usage {
        prompt_tokens: prompt,
        completion_tokens,
        total_tokens: prompt + completion_tokens,
    }
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
        kv_budget: args.kv_budget_mib.map_or(DEFAULT_KV_BUDGET, |m| m << 20),
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
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/fixtures/llama");
        let (model, tokenizer) = load_for_inference(&dir, None, "cpu", tch::Kind::Float, true).unwrap();
        let server = Server {
            name: "tiny".into(),
            context: model.config.max_position_embeddings as usize,
            model,
            tokenizer,
            template: None,
            kv_budget,
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (queue, jobs) = std::sync::mpsc::channel();
        std::thread::spawn(move || http::accept(listener, limits, queue));
        std::thread::spawn(move || server.run(jobs));
        addr
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
    fn a_request_whose_kv_cache_is_over_the_budget_is_refused_with_a_400() {
        // The fixture's cache takes 256 bytes a token: 128 samples and the prompt of its whole
        // 128-token context take 4.03 MiB.
        let addr = start(http::Limits::default(), 1 << 20);
        let huge = r#"{"model": "tiny", "prompt": "def f(", "n": 128, "max_tokens": 1000000000}"#;
        let answers = exchange(addr, &post("/v1/completions", huge));
        assert_eq!(answers[0].0, 400);
        let message = answers[0].1["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("this request's KV cache would take 5 MiB (128 samples and the prompt's, 128 tokens")
                && message.contains("over the server's budget of 1 MiB"),
            "{message}"
        );
        let answers = exchange(addr, &post("/v1/completions", SMALL));
        assert_eq!(answers[0].0, 200, "{}", answers[0].1);
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
