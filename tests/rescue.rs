//! Rescue's knowledge-base stages through the CLI: `kb-summarize` against an OpenAI-compatible
//! endpoint (a counting HTTP server on 127.0.0.1 standing in for a hosted LLM) summarises every
//! (language, CWE) cluster down to one summary per facet, editing one prompt file re-asks only
//! the requests it changed, and a missing API-key variable stops the run before any request.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{events, statuses, Workspace};
use serde_json::json;

/// A chat endpoint that answers every request with a short text naming its prompt's first
/// line, and remembers the prompts it was sent.
struct Endpoint {
    url: String,
    prompts: Arc<Mutex<Vec<String>>>,
}

fn endpoint() -> Endpoint {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", server.server_addr().to_ip().unwrap());
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let seen = prompts.clone();
    let counter = AtomicUsize::new(0);
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut body = String::new();
            request.as_reader().read_to_string(&mut body).unwrap();
            let asked: serde_json::Value = serde_json::from_str(&body).unwrap();
            let prompt = asked["messages"][0]["content"].as_str().unwrap().to_string();
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let answer = format!("- rule {n}: {}", prompt.lines().next().unwrap_or_default());
            seen.lock().unwrap().push(prompt);
            let reply = json!({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}]});
            let _ = request.respond(tiny_http::Response::from_string(reply.to_string()));
        }
    });
    Endpoint { url, prompts }
}

fn manifest(url: &str, key_env: Option<&str>) -> String {
    let key = key_env.map(|k| format!(", api_key_env: {k}")).unwrap_or_default();
    format!(
        "name: kb\nstages:\n  kb-examples:\n    kind: kb-slice\n    inputs:\n      data: {{path: manifests/data/quickstart-pairs}}\n  kb-summaries:\n    kind: kb-summarize\n    inputs:\n      examples: kb-examples\n      prompts: {{path: prompts}}\n    params:\n      group_size: 2\n      backend: {{http: {{url: \"{url}\", model: m, retries: 0{key}}}}}\n"
    )
}

fn copy_prompts(ws: &Workspace) {
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/prompts/rescue");
    common::copy_dir(&from, &ws.path().join("prompts"));
}

#[test]
fn summaries_reach_one_per_cluster_and_an_edited_prompt_reasks_only_its_requests() {
    let server = endpoint();
    let ws = Workspace::new();
    copy_prompts(&ws);
    ws.write("kb.yaml", &manifest(&server.url, None));
    let first = ws.run_json(&["kb.yaml"]);
    assert!(statuses(&first).iter().all(|(_, s)| s == "ran"), "{first:?}");
    let sent = server.prompts.lock().unwrap().clone();
    let summaries: Vec<serde_json::Value> =
        std::fs::read_to_string(ws.path().join("out/kb/kb-summaries/summaries.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    // Every cluster of the quickstart data (4 Python CWEs, 5 C CWEs), each facet one summary.
    assert_eq!(summaries.len(), 9);
    for s in &summaries {
        let fixes = s["examples"].as_array().unwrap().len();
        // Two fixes per request: three fixes need a second round.
        assert_eq!(s["levels"], if fixes > 2 { 2 } else { 1 }, "{s}");
        assert!(s["guideline"].as_str().unwrap().starts_with("- rule"), "{s}");
        if fixes > 2 {
            assert!(
                s["cause"].as_str().unwrap().contains("explanations of the root causes"),
                "{s}"
            );
        }
    }
    let causes = sent.iter().filter(|p| p.contains("root causes")).count();
    assert!(causes > 0 && causes < sent.len());
    // One prompt edited: the stage reruns, but only the cause requests are sent again.
    let edited = std::fs::read_to_string(ws.path().join("prompts/cause.txt")).unwrap() + "Be brief.\n";
    std::fs::write(ws.path().join("prompts/cause.txt"), edited).unwrap();
    let second = ws.run_json(&["kb.yaml"]);
    assert_eq!(second["kb-summaries"]["status"], "ran");
    let resent: Vec<String> = server.prompts.lock().unwrap()[sent.len()..].to_vec();
    let first_level_causes = sent.iter().filter(|p| p.contains("Explain the root causes")).count();
    assert!(
        !resent.is_empty() && resent.iter().all(|p| p.contains("root causes")),
        "{resent:?}"
    );
    assert!(
        resent.len() >= first_level_causes && resent.len() <= causes,
        "{} resent",
        resent.len()
    );
}

#[test]
fn a_missing_api_key_variable_stops_the_run_before_any_request() {
    let server = endpoint();
    let ws = Workspace::new();
    copy_prompts(&ws);
    ws.write("kb.yaml", &manifest(&server.url, Some("SECVEC_TEST_KEY_NOBODY_SET")));
    let out = ws.run(&["run", "kb.yaml", "--json"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SECVEC_TEST_KEY_NOBODY_SET"), "{stderr}");
    assert!(events(&out.stdout).is_empty(), "nothing ran");
    assert!(server.prompts.lock().unwrap().is_empty());
}
