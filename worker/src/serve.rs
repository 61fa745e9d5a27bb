//! `secvec serve`: the model stack behind an OpenAI-compatible HTTP endpoint
//! (`/v1/chat/completions`, `/v1/completions`, `/v1/models`), so any client of that protocol,
//! and secvec's own LLM stages, can use a local model. Requests are answered one at a time;
//! the same request with the same `seed` gives the same answer.

use std::io::Read;

use anyhow::Context;
use secvec_llm::wire::{
    ChatChoice, ChatRequest, ChatResponse, CompletionChoice, CompletionRequest, CompletionResponse, ErrorBody,
    ErrorDetail, Message, ModelCard, ModelList, Prompt, SamplingFields, Stop, Usage,
};
use secvec_model::chat_template::ChatTemplate;
use secvec_model::generate::{generate, Completion, FinishReason, Sampling};
use secvec_model::load_for_inference;
use secvec_model::tokenizer::TextTokenizer;
use secvec_model::transformer::Transformer;
use secvec_stages::worker::ServeRequest;

use crate::kind_of;

struct Server {
    name: String,
    model: Transformer,
    tokenizer: TextTokenizer,
    template: Option<ChatTemplate>,
    context: usize,
}

/// An error answer: HTTP status and the message clients see.
struct Refusal(u16, String);

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

const DEFAULT_MAX_TOKENS: usize = 512;

/// The largest request body read (bytes).
const MAX_BODY: u64 = 16 << 20;

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
        let n = o.n.unwrap_or(1);
        if n == 0 || n > 128 {
            return Err(refuse(400, format!("`n` is {n}; ask for 1 to 128 choices")));
        }
        Ok(Sampling {
            n,
            temperature: o.temperature.unwrap_or(1.0),
            top_p: o.top_p.unwrap_or(1.0),
            max_new_tokens: o.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).min(room),
            stop: o.stop.as_ref().map(Stop::list).unwrap_or_default(),
            seed: o.seed.unwrap_or(0),
            batch_size: n,
        })
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

    fn answer(&self, method: &tiny_http::Method, path: &str, body: &str) -> Result<String, Refusal> {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        match (method, path) {
            (tiny_http::Method::Get, "/v1/models") => Ok(self.models()),
            (tiny_http::Method::Post, "/v1/chat/completions") => self.chat(body),
            (tiny_http::Method::Post, "/v1/completions") => self.completions(body),
            _ => Err(refuse(404, format!("no route for {method} {path}"))),
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
    };
    let http = tiny_http::Server::http((args.host.as_str(), args.port))
        .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    let addr = http.server_addr().to_ip().context("the server has no IP address")?;
    println!("listening on http://{addr}/v1 (model `{}`)", server.name);
    use std::io::Write;
    std::io::stdout().flush()?;
    for mut request in http.incoming_requests() {
        let mut body = String::new();
        // A request is a JSON body of messages; anything past the limit is refused, not read.
        let read = request
            .as_reader()
            .take(MAX_BODY + 1)
            .read_to_string(&mut body)
            .and_then(|n| {
                if n as u64 > MAX_BODY {
                    Err(std::io::Error::other(format!("the body is over {MAX_BODY} bytes")))
                } else {
                    Ok(n)
                }
            });
        let (status, text) = match read {
            Err(e) => (400, error_body(&format!("reading the request: {e}"))),
            Ok(_) => match server.answer(request.method(), request.url(), &body) {
                Ok(text) => (200, text),
                Err(Refusal(status, message)) => (status, error_body(&message)),
            },
        };
        let header = "Content-Type: application/json"
            .parse::<tiny_http::Header>()
            .expect("a valid header");
        let _ = request.respond(
            tiny_http::Response::from_string(text)
                .with_status_code(status)
                .with_header(header),
        );
    }
    Ok(())
}

fn error_body(message: &str) -> String {
    serde_json::to_string(&ErrorBody {
        error: ErrorDetail {
            message: message.to_string(),
            kind: "invalid_request_error".into(),
            code: None,
        },
    })
    .expect("errors serialise")
}
