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

fn retrieval_manifest(url: &str) -> String {
    format!(
        r#"name: rag
stages:
  kb-examples:
    kind: kb-slice
    inputs:
      data: {{path: manifests/data/quickstart-pairs}}
  kb-summaries:
    kind: kb-summarize
    inputs: {{examples: kb-examples, prompts: {{path: prompts}}}}
    params: {{group_size: 10, backend: {{http: {{url: "{url}", model: m, retries: 0}}}}}}
  scenarios:
    kind: scenarios
    inputs:
      data: {{path: manifests/data/quickstart-scenarios}}
  by-code:
    kind: retrieve
    inputs:
      tasks: scenarios
      drafts: {{path: manifests/data/quickstart-completions.jsonl}}
      examples: kb-examples
      encoder: {{path: .models/minilm}}
    params:
      facets: [api, code]
      top_cwes: 2
      thresholds: {{api: 0.5, code: 0.3}}
  with-cause:
    kind: retrieve
    inputs:
      tasks: scenarios
      drafts: {{path: manifests/data/quickstart-completions.jsonl}}
      examples: kb-examples
      summaries: kb-summaries
      encoder: {{path: .models/minilm}}
      prompt: {{path: prompts/analysis.txt}}
    params:
      thresholds: {{api: 0.5, cause: 0.0, code: 0.3}}
      backend: {{http: {{url: "{url}", model: m, retries: 0}}}}
  seccoder:
    kind: retrieve
    inputs:
      tasks: scenarios
      examples: kb-examples
      encoder: {{path: .models/minilm}}
    params: {{strategy: seccoder}}
"#
    )
}

fn retrieved(ws: &Workspace, stage: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(ws.path().join(format!("out/rag/{stage}/retrieved.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn retrieval_finds_each_task_its_own_cwe_and_asks_the_llm_once_per_task() {
    if !common::bwrap_available() || !common::model_available("minilm") {
        return;
    }
    let server = endpoint();
    let ws = Workspace::new();
    copy_prompts(&ws);
    ws.write("rag.yaml", &retrieval_manifest(&server.url));
    ws.run_json(&["rag.yaml"]);

    // The secure completions as drafts: their APIs and code lead to their own CWE's fixes.
    let by_code = retrieved(&ws, "by-code");
    assert_eq!(by_code.len(), 3);
    for r in &by_code {
        let task_cwe = r["id"].as_str().unwrap().split('/').next().unwrap();
        assert_eq!(r["example"]["cwe"], task_cwe, "{r}");
        assert!(
            r["example"]["cause"].is_null() && r["example"]["guideline"].is_null(),
            "{r}"
        );
        assert!(r["cwes"].as_array().unwrap().len() <= 2, "{r}");
    }
    let sql = by_code.iter().find(|r| r["id"] == "cwe-089/0-py").unwrap();
    assert!(
        sql["apis"].as_array().unwrap().iter().any(|a| a == "cur.execute"),
        "{sql}"
    );

    // With the cause facet: one analysis request per task, its text kept; the guideline of
    // the retrieved example's CWE comes along.
    let sent = server.prompts.lock().unwrap().clone();
    let analyses: Vec<&String> = sent
        .iter()
        .filter(|p| p.contains("Before any code is written"))
        .collect();
    assert_eq!(analyses.len(), 3, "{analyses:?}");
    assert!(
        analyses.iter().any(|p| p.contains("users table")),
        "the task's description is asked about"
    );
    for r in retrieved(&ws, "with-cause") {
        assert!(r["cause"].as_str().unwrap().starts_with("- rule"), "{r}");
        if r["example"]["language"] == "python" {
            assert!(r["example"]["guideline"].as_str().unwrap().starts_with("- rule"), "{r}");
        }
    }

    // SecCoder: one whole secure function per task, no threshold, no guideline.
    for r in retrieved(&ws, "seccoder") {
        let e = &r["example"];
        assert!(
            e["guideline"].is_null() && e["secure_original"].as_str().unwrap().contains('\n'),
            "{r}"
        );
    }

    // A rerun with a changed threshold re-ranks without asking the LLM again.
    let again = ws.run_json(&["rag.yaml", "--set", "stages.with-cause.params.top_cwes=1"]);
    assert_eq!(again["with-cause"]["status"], "ran");
    assert_eq!(server.prompts.lock().unwrap().len(), sent.len());
}

#[test]
fn the_cause_facet_without_summaries_is_a_clear_error() {
    if !common::bwrap_available() || !common::model_available("minilm") {
        return;
    }
    let ws = Workspace::new();
    copy_prompts(&ws);
    let manifest = retrieval_manifest("http://127.0.0.1:9/v1")
        .replace("      facets: [api, code]\n", "      facets: [api, cause]\n");
    ws.write("rag.yaml", &manifest);
    let out = ws.run(&["run", "rag.yaml", "--only", "by-code"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("by-code") && said.contains("bind `summaries`"), "{said}");
}
