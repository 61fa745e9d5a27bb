//! `secvec serve` is a real OpenAI-compatible server: the official `openai` Python client lists
//! its model and gets chat and plain completions from it, secvec's own HTTP client gets the
//! same answer, and that answer is what the model stack generates in-process for the same
//! prompt. Wrong requests get the protocol's error bodies.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{root, serve, tiny_chat_model};

use secvec_llm::client::{Client, Endpoint, Policy};
use secvec_llm::wire::{ChatRequest, CompletionRequest, CompletionResponse, Message, Prompt, SamplingFields};
use secvec_model::chat_template::ChatTemplate;
use secvec_model::generate::{generate, Batching, Request, Sampling};
use secvec_model::tokenizer::TextTokenizer;
use secvec_model::transformer::Transformer;
use serde_json::json;

fn python() -> Option<PathBuf> {
    let py = root().join(".venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("notice: no .venv with openai (run scripts/setup.sh); skipping the client test");
    }
    ok.then_some(py)
}

const CLIENT: &str = r#"
import json, sys, openai
c = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
out = {"models": [m.id for m in c.models.list().data]}
chat = c.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "def read(path):"}],
                                 max_tokens=12, temperature=0, seed=3)
out["chat"] = chat.choices[0].message.content
out["chat_finish"] = chat.choices[0].finish_reason
out["chat_usage"] = [chat.usage.prompt_tokens, chat.usage.completion_tokens]
two = c.completions.create(model="tiny-chat", prompt=["import os\n", "int main("], max_tokens=6,
                           temperature=0.8, seed=5, n=2)
out["completions"] = [x.text for x in two.choices]
try:
    c.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
except openai.NotFoundError as e:
    out["wrong_model"] = e.status_code
try:
    c.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "x"}], stream=True)
except openai.BadRequestError as e:
    out["stream"] = e.status_code
try:
    c.completions.create(model="tiny-chat", prompt="import os\n", max_tokens=2, logprobs=1)
except openai.BadRequestError as e:
    out["logprobs"] = [e.status_code, "logprobs" in str(e)]
out["no_logprobs"] = c.completions.create(model="tiny-chat", prompt="import os\n", max_tokens=2, logprobs=0).choices[0].logprobs
print(json.dumps(out))
"#;

/// secvec's client of the tiny chat model served at `url`; each request waits for its answer.
fn client(url: &str) -> Client {
    Client::new(
        Endpoint {
            url: url.to_string(),
            model: "tiny-chat".into(),
            api_key: None,
        },
        Policy {
            concurrency: 1,
            timeout: Duration::from_secs(120),
            retries: 0,
            backoff: Duration::from_millis(10),
        },
    )
}

#[test]
fn the_openai_client_and_secvecs_client_get_what_the_model_stack_generates() {
    let Some(python) = python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_chat_model(tmp.path());
    let served = serve(&dir);
    let out = Command::new(&python)
        .args(["-c", CLIENT, &served.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["models"], json!(["tiny-chat"]));
    assert_eq!(got["wrong_model"], 404);
    assert_eq!(got["stream"], 400);
    assert_eq!(
        got["logprobs"],
        json!([400, true]),
        "logprobs asked for are refused clearly"
    );
    assert_eq!(got["no_logprobs"], json!(null));
    assert_eq!(
        got["completions"].as_array().unwrap().len(),
        4,
        "two prompts, two choices each"
    );

    // The same request through secvec's client.
    let client = client(&served.url);
    let request = ChatRequest {
        model: "tiny-chat".into(),
        messages: vec![Message::user("def read(path):")],
        sampling: SamplingFields {
            temperature: Some(0.0),
            max_tokens: Some(12),
            seed: Some(3),
            ..SamplingFields::default()
        },
    };
    let ours = client.send(&request).unwrap();
    assert_eq!(ours.choices[0].message.content, got["chat"].as_str().unwrap());

    // And in-process: the template's prompt, greedy, 12 tokens.
    let model = Transformer::load(&dir, tch::Device::Cpu, tch::Kind::Float).unwrap();
    let tokenizer = TextTokenizer::load(&dir, model.config.vocab_size).unwrap();
    let prompt = ChatTemplate::load(&dir)
        .unwrap()
        .render(&json!([{"role": "user", "content": "def read(path):"}]), true)
        .unwrap();
    let ids = tokenizer.encode_continuation(&prompt).unwrap();
    let sampling = Sampling::greedy(12);
    let local = generate(
        &model,
        &tokenizer,
        Request::new(&ids, 0),
        &sampling,
        Batching::rows(1),
        &model.config.eos_token_ids,
    )
    .unwrap();
    assert_eq!(local[0].text, got["chat"].as_str().unwrap());
    assert_eq!(
        got["chat_usage"],
        json!([ids.len(), local[0].completion_tokens]),
        "usage counts the prompt and the completion"
    );
}

#[test]
fn eight_clients_at_once_get_the_answers_each_gets_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_chat_model(tmp.path());
    let served = serve(&dir);
    let client = client(&served.url);
    let requests: Vec<CompletionRequest> = (0..8)
        .map(|i| CompletionRequest {
            model: "tiny-chat".into(),
            prompt: Prompt::One(["def read(path):", "import os\n", "int main(void) {", "x = ["][i % 4].into()),
            sampling: SamplingFields {
                temperature: Some(0.8),
                max_tokens: Some(32),
                n: Some(2),
                seed: Some(i as u64),
                ..SamplingFields::default()
            },
        })
        .collect();
    let start = std::sync::Barrier::new(requests.len());
    let together: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .iter()
            .map(|r| {
                let (client, start) = (&client, &start);
                s.spawn(move || {
                    start.wait();
                    client.send(r).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (r, t) in requests.iter().zip(&together) {
        let alone = client.send(r).unwrap();
        let texts = |c: &CompletionResponse| c.choices.iter().map(|x| x.text.clone()).collect::<Vec<_>>();
        assert_eq!(texts(&alone), texts(t), "{:?}", r.prompt);
        assert_eq!(alone.usage, t.usage);
    }
    let distinct: std::collections::BTreeSet<_> = together.iter().flat_map(|t| &t.choices).map(|c| &c.text).collect();
    assert!(
        distinct.len() > 4,
        "seeds and prompts differ, so do samples: {distinct:?}"
    );
}
