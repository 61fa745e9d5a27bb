//! `generate` with `backend: {http: ...}`: through `secvec serve` it writes what local
//! generation writes; through llama.cpp's own `llama-server` (a real third-party server) its
//! samples are scored like any others; either way every answer is memoised, so a rerun needs no
//! server, and a server that is down, a missing key or a model the server does not serve is a
//! clear error before any work.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{root, serve, tiny_chat_model, Workspace};
use serde_json::Value;

fn samples_of(ws: &Workspace, stage: &str) -> Vec<Value> {
    std::fs::read_to_string(ws.path().join(format!("out/m/{stage}/samples.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs the manifest; panics with stderr when it fails.
fn run_ok(ws: &Workspace, args: &[&str]) -> std::collections::BTreeMap<String, Value> {
    let out = ws.run(&[&["run", "m.yaml", "--json"], args].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    common::events(&out.stdout)
}

const PROMPTS: &str = "{\"id\": \"p0\", \"prompt\": \"def read(path):\"}\n{\"id\": \"p1\", \"prompt\": \"import os\\n\"}\n{\"id\": \"p2\", \"prompt\": \"int main(void) {\"}\n";

#[test]
fn through_secvec_serve_a_served_generate_writes_the_local_samples_and_reruns_from_the_memo() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_chat_model(tmp.path());
    let server = serve(&model);
    let ws = Workspace::new();
    ws.write("prompts.jsonl", PROMPTS);
    let sampling = "n: 1, temperature: 0, max_new_tokens: 8";
    ws.write(
        "m.yaml",
        &format!(
            "name: m\nstages:\n  local:\n    kind: generate\n    inputs: {{model: {{path: {}}}, prompts: {{path: prompts.jsonl}}}}\n    params: {{{sampling}}}\n  served:\n    kind: generate\n    inputs: {{prompts: {{path: prompts.jsonl}}}}\n    params: {{{sampling}, backend: {{http: {{url: '{}', model: tiny-chat, retries: 0}}}}}}\n",
            model.display(),
            server.url
        ),
    );
    run_ok(&ws, &[]);
    let (local, served) = (samples_of(&ws, "local"), samples_of(&ws, "served"));
    assert_eq!(served.len(), 3);
    for (l, s) in local.iter().zip(&served) {
        assert_eq!(l["prompt_id"], s["prompt_id"]);
        assert_eq!(l["text"], s["text"], "greedy through the server is greedy in-process");
        let (lg, sg) = (&l["generation"], &s["generation"]);
        assert_eq!(lg["completion_tokens"], sg["completion_tokens"]);
        assert_eq!(lg["prompt_tokens"], sg["prompt_tokens"]);
        assert_eq!(lg["finish_reason"], sg["finish_reason"]);
    }
    let recorded = json_file(&ws.path().join("out/m/served/served.json"));
    assert_eq!(recorded["models"][0]["id"], "tiny-chat", "{recorded}");
    assert_eq!(recorded["url"], server.url.as_str());

    // With the server gone, a forced rerun answers every request from the memo.
    drop(server);
    let events = run_ok(&ws, &["--force", "served"]);
    assert_eq!(events["served"]["status"], "ran");
    assert_eq!(samples_of(&ws, "served"), served);
}

#[test]
fn a_server_that_is_down_a_missing_key_or_an_unserved_model_is_a_clear_error_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_chat_model(tmp.path());
    let server = serve(&model);
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let ws = Workspace::new();
    ws.write("prompts.jsonl", PROMPTS);
    let manifest = |http: &str, inputs: &str| {
        format!("name: m\nstages:\n  served:\n    kind: generate\n    inputs: {{prompts: {{path: prompts.jsonl}}{inputs}}}\n    params: {{max_new_tokens: 4, backend: {{http: {{{http}, retries: 0}}}}}}\n")
    };
    let failed = |text: String| -> (i32, String) {
        ws.write("m.yaml", &text);
        let out = ws.run(&["run", "m.yaml", "--json"]);
        let events = common::events(&out.stdout);
        let error = events
            .get("served")
            .and_then(|e| e["error"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned());
        let entries = std::fs::read_dir(ws.path().join(".secvec/ac"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(entries, 0, "a failed stage leaves no cache entry: {error}");
        (out.status.code().unwrap(), error)
    };

    let (_, down) = failed(manifest(&format!("url: 'http://127.0.0.1:{closed}/v1', model: x"), ""));
    assert!(
        down.contains(&format!("127.0.0.1:{closed}/v1/models")) && down.contains("is the server running"),
        "{down}"
    );
    let (code, key) = failed(manifest(
        &format!(
            "url: '{}', model: tiny-chat, api_key_env: SECVEC_TEST_NO_SUCH_KEY",
            server.url
        ),
        "",
    ));
    assert_eq!(code, 2, "a missing key is found when planning: {key}");
    assert!(key.contains("SECVEC_TEST_NO_SUCH_KEY"), "{key}");
    let (_, unserved) = failed(manifest(&format!("url: '{}', model: other", server.url), ""));
    assert!(
        unserved.contains("does not serve `other`") && unserved.contains("tiny-chat"),
        "{unserved}"
    );
    let (code, bound) = failed(manifest(
        &format!("url: '{}', model: tiny-chat", server.url),
        &format!(", model: {{path: {}}}", model.display()),
    ));
    assert_eq!(code, 2, "{bound}");
    assert!(bound.contains("takes no `model`"), "{bound}");
}

/// `.tools/llama-server` (scripts/llama-server.sh builds it); under CI it must be there.
fn llama_server() -> Option<PathBuf> {
    let path = root().join(".tools/llama-server");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no .tools/llama-server under CI: scripts/test.sh builds it with scripts/llama-server.sh"
    );
    eprintln!("notice: no .tools/llama-server (scripts/llama-server.sh builds it); skipping");
    None
}

struct LlamaServer {
    child: Child,
    url: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `llama-server` serving `gguf` as `alias` with 4 parallel slots, once it answers `/health`.
fn start_llama_server(binary: &Path, gguf: &Path, alias: &str) -> LlamaServer {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(binary)
        .args([
            "-m",
            &gguf.display().to_string(),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["-a", alias, "-np", "4", "-c", "4096", "-t", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = LlamaServer {
        child,
        url: format!("http://127.0.0.1:{port}/v1"),
    };
    let started = Instant::now();
    while !healthy(port) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "llama-server did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

/// Whether `GET /health` answers 200 (llama-server answers 503 while it loads the model).
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    // A server that accepts and never answers must not hang the test.
    if stream.set_read_timeout(Some(Duration::from_secs(5))).is_err() {
        return false;
    }
    let mut answer = String::new();
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

#[test]
fn through_llama_server_samples_are_scored_and_a_rerun_needs_no_server() {
    let Some(binary) = llama_server() else {
        return;
    };
    if !common::model_available("smollm2") || !common::bwrap_available() {
        return;
    }
    let gguf = root().join(".models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let server = start_llama_server(&binary, &gguf, "smollm2");
    let ws = Workspace::new();
    let http = format!("http: {{url: '{}', model: smollm2, concurrency: 4}}", server.url);
    ws.write(
        "m.yaml",
        &format!(
            r#"name: m
stages:
  scenarios:
    kind: scenarios
    inputs: {{data: {{path: manifests/data/quickstart-scenarios}}}}
  completions:
    kind: generate
    inputs: {{prompts: scenarios}}
    params: {{n: 4, temperature: 0.8, max_new_tokens: 48, stop_at_function_end: true, seed: 1, backend: {{{http}, samples_per_request: 2}}}}
  chat:
    kind: generate
    inputs: {{prompts: scenarios}}
    params: {{n: 1, temperature: 0, max_new_tokens: 96, backend: {{{http}, api: chat}}}}
  completion-scores:
    kind: score
    inputs: {{scenarios: scenarios, samples: completions, oracles: {{path: manifests/oracles}}}}
  chat-scores:
    kind: score
    inputs: {{scenarios: scenarios, samples: chat, oracles: {{path: manifests/oracles}}}}
"#
        ),
    );
    run_ok(&ws, &[]);
    let completions = samples_of(&ws, "completions");
    let scenarios = completions.len() / 4;
    assert!(scenarios >= 2, "{completions:?}");
    for (i, s) in completions.iter().enumerate() {
        assert_eq!(s["sample"], (i % 4) as u64, "two requests of n 2 per prompt, in order");
        assert!(s["generation"]["completion_tokens"].as_u64().unwrap() > 0);
    }
    let texts: std::collections::BTreeSet<&str> = completions.iter().map(|s| s["text"].as_str().unwrap()).collect();
    assert!(texts.len() > scenarios, "T 0.8 gives more than one sample per prompt");
    let recorded = json_file(&ws.path().join("out/m/completions/served.json"));
    assert_eq!(recorded["models"][0]["id"], "smollm2", "{recorded}");
    assert!(
        recorded["reported"]["props"]["build_info"].is_string(),
        "llama.cpp reports its build: {recorded}"
    );
    for stage in ["completion-scores", "chat-scores"] {
        let results = json_file(&ws.path().join(format!("out/m/{stage}/results.json")));
        assert!(results.to_string().contains("pass@1"), "{stage}: {results}");
    }
    // Chat replies become programs: the fenced code, continued from the prefix or whole.
    let chat = samples_of(&ws, "chat");
    assert_eq!(chat.len(), scenarios);
    assert!(
        chat.iter().all(|s| !s["text"].as_str().unwrap().contains("```")),
        "{chat:?}"
    );

    drop(server);
    let events = run_ok(&ws, &["--force", "completions", "--force", "chat"]);
    assert_eq!(events["completions"]["status"], "ran");
    assert_eq!(
        samples_of(&ws, "completions"),
        completions,
        "every answer came from the memo"
    );
    assert_eq!(samples_of(&ws, "chat"), chat);
}
