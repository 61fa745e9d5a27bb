//! `generate` through an OpenAI-compatible server: every sample is a request of its own (or
//! `samples_per_request` of them share one), seeded from the run's seed and the prompt's text,
//! memoised by request as it arrives, and written in the same `samples` format as local
//! generation, so scoring and reports do not know the difference.

use anyhow::Context;
use schemars::JsonSchema;
use secvec_artifacts::prompts::{self, Prompt};
use secvec_artifacts::results::Results;
use secvec_artifacts::samples::{self, FinishReason, Generation, Sample, Served};
use secvec_llm::backend::HttpBackend;
use secvec_llm::client::{recall_all, Call, Client};
use secvec_llm::wire::{
    ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, Message, Prompt as WirePrompt, SamplingFields,
    Stop, Usage,
};
use secvec_score::postprocess::function_end;
use secvec_stage::StageContext;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};

use super::GenerateParams;
use crate::input_file::input_file;

/// `backend:` of `generate`: the server and how to ask it.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServedBackend {
    pub http: HttpBackend,
    #[serde(default)]
    pub api: Api,
    /// Samples one request asks for (`n`). 1, the default, gives every sample its own request
    /// and seed, so a sample is the same whatever `n` is; more saves an API's prompt tokens on
    /// servers that honour `n`.
    #[serde(default = "one")]
    pub samples_per_request: usize,
}

fn one() -> usize {
    1
}

/// Which endpoint a prompt goes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `/v1/completions`: the server continues the prompt's text as it is (raw code prompts,
    /// or prompts that already carry the model's template).
    #[default]
    Completions,
    /// `/v1/chat/completions`: the prompt is the user's message and the server applies the
    /// model's chat template. The sample is the reply's first fenced code block (the whole reply
    /// when it has none); for a scenario, what follows the scenario's prefix when the code
    /// repeats it, else the code as a whole program.
    Chat,
}

/// A request's seed: from the run's seed, the prompt's text and the request's place among the
/// prompt's requests, so it does not depend on the prompt's place in its file. Below 2³¹ − 1,
/// which every server takes as a fixed seed (llama.cpp reads 2³² − 1 as "random").
fn request_seed(seed: u64, prompt: &str, group: usize) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.update(&(group as u64).to_le_bytes());
    hasher.update(prompt.as_bytes());
    let bytes = hasher.finalize();
    u64::from(u32::from_le_bytes(bytes.as_bytes()[..4].try_into().expect("4 bytes"))) % 0x7fff_ffff
}

/// One answer, whichever API gave it.
struct Answer {
    text: String,
    finish_reason: Option<String>,
}

pub fn run(p: &GenerateParams, backend: &ServedBackend, ctx: &StageContext) -> anyhow::Result<()> {
    let (endpoint, policy) = backend.http.resolve()?;
    let client = Client::new(endpoint, policy);
    let prompts_path = input_file(&ctx.required("prompts")?.path, &p.prompts_file)?;
    let mut prompts = prompts::read(&prompts_path)?;
    if let Some(limit) = p.limit {
        prompts.truncate(limit);
    }
    // Each request: its prompt, the index of its first sample, and how many samples it asks for.
    let per = backend.samples_per_request.clamp(1, p.n);
    let groups: Vec<(usize, usize, usize)> = (0..prompts.len())
        .flat_map(|k| (0..p.n.div_ceil(per)).map(move |g| (k, g * per, per.min(p.n - g * per))))
        .collect();
    let sampling = |k: usize, first: usize, n: usize| SamplingFields {
        temperature: Some(p.temperature),
        top_p: Some(p.top_p),
        max_tokens: Some(p.max_new_tokens),
        seed: Some(request_seed(p.seed, &prompts[k].prompt, first / per)),
        n: (n > 1).then_some(n),
        stop: (!p.stop.is_empty()).then(|| Stop::Many(p.stop.clone())),
        ..SamplingFields::default()
    };
    let model = backend.http.model.clone();
    let mut served = Served {
        url: backend.http.url.trim_end_matches('/').to_string(),
        model: model.clone(),
        models: None,
        reported: None,
    };
    let answers: Vec<(Vec<Answer>, Option<Usage>)> = match backend.api {
        Api::Completions => {
            let requests: Vec<CompletionRequest> = groups
                .iter()
                .map(|&(k, first, n)| CompletionRequest {
                    model: model.clone(),
                    prompt: WirePrompt::One(prompts[k].prompt.clone()),
                    sampling: sampling(k, first, n),
                })
                .collect();
            let responses = ask_all(&client, &requests, &backend.http, &mut served, ctx)?;
            responses.into_iter().map(completion_answers).collect()
        }
        Api::Chat => {
            let requests: Vec<ChatRequest> = groups
                .iter()
                .map(|&(k, first, n)| ChatRequest {
                    model: model.clone(),
                    messages: vec![Message::user(prompts[k].prompt.clone())],
                    sampling: sampling(k, first, n),
                })
                .collect();
            let responses = ask_all(&client, &requests, &backend.http, &mut served, ctx)?;
            responses.into_iter().map(chat_answers).collect()
        }
    };
    let mut samples = Vec::with_capacity(prompts.len() * p.n);
    let mut prompt_tokens = 0;
    let mut completion_tokens = 0;
    for (&(k, first, n), (group, usage)) in groups.iter().zip(answers) {
        anyhow::ensure!(
            group.len() == n,
            "{}: asked for {n} samples of prompt `{}` in one request and got {}: set `samples_per_request: 1` for a server that does not honour `n`",
            backend.http.url,
            prompts[k].id,
            group.len()
        );
        let usage = usage.unwrap_or_default();
        // Usage is per request: its prompt once, its completions shared out.
        prompt_tokens += usage.prompt_tokens;
        completion_tokens += usage.completion_tokens;
        for (i, answer) in group.into_iter().enumerate() {
            samples.push(sample(
                &prompts[k],
                first + i,
                answer,
                backend.api,
                p.stop_at_function_end,
                &usage,
                n,
            ));
        }
    }
    let stopped = samples
        .iter()
        .filter(|s| {
            s.generation
                .as_ref()
                .is_some_and(|g| g.finish_reason == FinishReason::Stop)
        })
        .count();
    samples::write(ctx, &samples)?;
    samples::write_served(ctx, &served)?;
    let n = samples.len().max(1) as f64;
    Results::from_rows([json!({
        "prompts": prompts.len(),
        "samples": samples.len(),
        "mean_prompt_tokens": prompt_tokens as f64 / groups.len().max(1) as f64,
        "mean_completion_tokens": completion_tokens as f64 / n,
        "stop_rate": stopped as f64 / n,
    })])
    .write(ctx)?;
    Ok(())
}

/// Every request's response, from the memo where it has them; the server is asked what it
/// serves before the first request the memo cannot answer.
fn ask_all<R: Call>(
    client: &Client,
    requests: &[R],
    http: &HttpBackend,
    served: &mut Served,
    ctx: &StageContext,
) -> anyhow::Result<Vec<R::Response>> {
    let identity = http.identity();
    let known = recall_all(requests, ctx.memo(), &identity);
    if known.iter().any(Option::is_none) {
        probe(client, http, served)?;
    }
    let total = requests.len() as u64;
    let done = AtomicU64::new(0);
    let on_done = || ctx.progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
    Ok(client.complete(requests, known, ctx.memo(), &identity, &on_done)?)
}

/// Checks that the server is up and serves the named model, and keeps what it reports.
fn probe(client: &Client, http: &HttpBackend, served: &mut Served) -> anyhow::Result<()> {
    let models = client.models().with_context(|| {
        format!(
            "asking {}/models which models it serves: is the server running, and is `backend.http.url` its base URL up to /v1?",
            http.url
        )
    })?;
    let ids: Vec<&str> = models.data.iter().map(|m| m.id.as_str()).collect();
    anyhow::ensure!(
        ids.contains(&http.model.as_str()),
        "{} does not serve `{}` (backend.http.model); it serves: {}",
        http.url,
        http.model,
        ids.join(", ")
    );
    served.models = Some(serde_json::to_value(&models.data)?);
    served.reported = Some(client.reported());
    Ok(())
}

/// A response's answers in choice order: `(index, text, finish_reason)` of each choice.
fn in_order(mut choices: Vec<(usize, String, Option<String>)>) -> Vec<Answer> {
    choices.sort_by_key(|c| c.0);
    choices
        .into_iter()
        .map(|(_, text, finish_reason)| Answer { text, finish_reason })
        .collect()
}

fn completion_answers(r: CompletionResponse) -> (Vec<Answer>, Option<Usage>) {
    let choices = r
        .choices
        .into_iter()
        .map(|c| (c.index, c.text, c.finish_reason))
        .collect();
    (in_order(choices), r.usage)
}

fn chat_answers(r: ChatResponse) -> (Vec<Answer>, Option<Usage>) {
    let choices = r
        .choices
        .into_iter()
        .map(|c| (c.index, c.message.content, c.finish_reason))
        .collect();
    (in_order(choices), r.usage)
}

/// One sample in the format local generation writes (no token ids: a server sends text).
fn sample(
    prompt: &Prompt,
    index: usize,
    answer: Answer,
    api: Api,
    stop_at_function_end: bool,
    usage: &Usage,
    shared_by: usize,
) -> Sample {
    let mut finish_reason = match answer.finish_reason.as_deref() {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    };
    let (mut text, program) = match api {
        Api::Completions => (answer.text, None),
        Api::Chat => match &prompt.scenario {
            Some(sc) => {
                let code = reply_code(&answer.text);
                match continuation(&sc.prefix, code) {
                    Some(rest) => (rest.to_string(), None),
                    None => (code.to_string(), Some(code.to_string())),
                }
            }
            None => (answer.text, None),
        },
    };
    if program.is_none() && stop_at_function_end {
        if let Some(sc) = &prompt.scenario {
            if let Some(end) = function_end(&sc.language, &sc.prefix, &text) {
                text.truncate(end);
                finish_reason = FinishReason::Stop;
            }
        }
    }
    Sample {
        prompt_id: prompt.id.clone(),
        sample: index,
        text,
        program,
        generation: Some(Generation {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens / shared_by.max(1),
            token_ids: Vec::new(),
            finish_reason,
        }),
    }
}

/// The first fenced code block of a chat reply, or the whole reply when it has none (or the
/// fence is never closed: a reply cut by `max_tokens`).
fn reply_code(reply: &str) -> &str {
    let Some(open) = reply.find("```") else {
        return reply;
    };
    // The opening fence's line ends with its info string (`python`).
    let Some(body_start) = reply[open..].find('\n').map(|at| open + at + 1) else {
        return reply;
    };
    let body = &reply[body_start..];
    match body.find("\n```") {
        Some(close) => &body[..close + 1],
        None if body.starts_with("```") => "",
        None => body,
    }
}

/// What follows the scenario's prefix in `code`, when the code begins by repeating it; the
/// prefix's trailing whitespace (the indentation the completion was to continue) may be written
/// by the model or not.
fn continuation<'a>(prefix: &str, code: &'a str) -> Option<&'a str> {
    let head = prefix.trim_end();
    let rest = code.trim_start().strip_prefix(head.trim_start())?;
    let tail = &prefix[head.len()..];
    Some(rest.strip_prefix(tail).unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_gives_its_first_fenced_block_or_itself() {
        assert_eq!(reply_code("Here:\n```python\nx = 1\n```\nand ```c\ny\n```"), "x = 1\n");
        assert_eq!(reply_code("x = 1\n"), "x = 1\n");
        assert_eq!(reply_code("```py\nx = 1\ny = 2"), "x = 1\ny = 2");
        assert_eq!(reply_code("```\n```"), "");
    }

    #[test]
    fn code_that_repeats_the_prefix_continues_it_and_other_code_is_a_whole_program() {
        let prefix = "import os\ndef f(x):\n    ";
        assert_eq!(
            continuation(prefix, "import os\ndef f(x):\n    return x\n"),
            Some("return x\n")
        );
        assert_eq!(
            continuation(prefix, "\nimport os\ndef f(x):\n  return x\n"),
            Some("\n  return x\n")
        );
        assert_eq!(continuation(prefix, "def f(x):\n    return x\n"), None);
    }

    #[test]
    fn a_requests_seed_depends_on_the_prompt_and_group_not_on_anything_else() {
        let a = request_seed(1, "p", 0);
        assert_eq!(a, request_seed(1, "p", 0));
        assert_ne!(a, request_seed(1, "p", 1));
        assert_ne!(a, request_seed(2, "p", 0));
        assert_ne!(a, request_seed(1, "q", 0));
        assert!((0..100).all(|g| request_seed(7, "p", g) < 0x7fff_ffff));
    }
}
