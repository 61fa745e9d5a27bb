//! The client against a real HTTP server on 127.0.0.1 that misbehaves on purpose: 429s, 5xx,
//! malformed bodies, timeouts and an endpoint that is not there are retried and then reported
//! clearly; a 4xx is not retried; responses obtained are memoised and not asked for again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use secvec_cache::Memo;
use secvec_llm::backend::HttpBackend;
use secvec_llm::client::{Client, Endpoint, Policy};
use secvec_llm::wire::{ChatRequest, Message, SamplingFields};
use secvec_llm::LlmError;
use serde_json::json;

/// What the server does with one request.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Status(u16),
    Malformed,
    Slow,
}

/// A server answering requests in turn from `script` (its last answer repeats), counting them.
struct Server {
    url: String,
    hits: Arc<AtomicUsize>,
}

fn serve(script: Vec<Answer>) -> Server {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", server.server_addr().to_ip().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let mut body = String::new();
            request.as_reader().read_to_string(&mut body).unwrap();
            let asked: serde_json::Value = serde_json::from_str(&body).unwrap();
            let answer = script[n.min(script.len() - 1)];
            let ok = json!({
                "id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": format!("echo: {}", asked["messages"][0]["content"].as_str().unwrap())}}]
            })
            .to_string();
            let response = match answer {
                Answer::Ok => tiny_http::Response::from_string(ok),
                Answer::Status(429) => tiny_http::Response::from_string("slow down")
                    .with_status_code(429)
                    .with_header("Retry-After: 0".parse::<tiny_http::Header>().unwrap()),
                Answer::Status(code) => tiny_http::Response::from_string("nope").with_status_code(code),
                Answer::Malformed => tiny_http::Response::from_string("{\"choices\": [oops"),
                Answer::Slow => {
                    std::thread::sleep(Duration::from_millis(1500));
                    tiny_http::Response::from_string(ok)
                }
            };
            let _ = request.respond(response);
        }
    });
    Server { url, hits }
}

fn client(url: &str, retries: u32) -> Client {
    Client::new(
        Endpoint {
            url: url.into(),
            model: "m".into(),
            api_key: None,
        },
        Policy {
            concurrency: 1,
            timeout: Duration::from_millis(500),
            retries,
            backoff: Duration::from_millis(10),
        },
    )
}

fn requests(n: usize) -> Vec<ChatRequest> {
    (0..n)
        .map(|i| ChatRequest {
            model: "m".into(),
            messages: vec![Message::user(format!("q{i}"))],
            sampling: SamplingFields {
                temperature: Some(0.0),
                max_tokens: Some(16),
                ..SamplingFields::default()
            },
        })
        .collect()
}

fn identity() -> serde_json::Value {
    json!({"model": "m"})
}

#[test]
fn a_429_a_5xx_and_a_malformed_body_are_retried_and_the_answer_is_memoised() {
    let server = serve(vec![
        Answer::Status(429),
        Answer::Status(503),
        Answer::Malformed,
        Answer::Ok,
    ]);
    let memo_dir = tempfile::tempdir().unwrap();
    let memo = Memo::new(memo_dir.path());
    let c = client(&server.url, 3);
    let done = AtomicUsize::new(0);
    let got = c
        .send_all(&requests(1), &memo, &identity(), &|| {
            done.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(got[0].choices[0].message.content, "echo: q0");
    assert_eq!(server.hits.load(Ordering::SeqCst), 4);
    assert_eq!(done.load(Ordering::SeqCst), 1);
    // A rerun asks nothing.
    let again = c.send_all(&requests(1), &memo, &identity(), &|| {}).unwrap();
    assert_eq!(again, got);
    assert_eq!(server.hits.load(Ordering::SeqCst), 4);
}

#[test]
fn failures_past_the_retries_are_a_clear_error_and_what_was_obtained_is_kept() {
    // Two good answers, then the server breaks for good.
    let server = serve(vec![Answer::Ok, Answer::Ok, Answer::Status(500)]);
    let memo_dir = tempfile::tempdir().unwrap();
    let memo = Memo::new(memo_dir.path());
    let err = client(&server.url, 2)
        .send_all(&requests(3), &memo, &identity(), &|| {})
        .unwrap_err();
    match &err {
        LlmError::GaveUp { url, attempts, what } => {
            assert!(url.ends_with("/v1/chat/completions"));
            assert_eq!(*attempts, 3);
            assert!(what.contains("HTTP 500"), "{what}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("rerun"), "{err}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 2 + 3);
    // Against a healthy server, only the third request is sent.
    let healthy = serve(vec![Answer::Ok]);
    let got = client(&healthy.url, 0)
        .send_all(&requests(3), &memo, &identity(), &|| {})
        .unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(healthy.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn a_timeout_is_retried_then_reported() {
    let server = serve(vec![Answer::Slow]);
    let memo_dir = tempfile::tempdir().unwrap();
    let err = client(&server.url, 1)
        .send_all(&requests(1), &Memo::new(memo_dir.path()), &identity(), &|| {})
        .unwrap_err();
    assert!(matches!(err, LlmError::GaveUp { attempts: 2, .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("timeout"), "{err}");
}

#[test]
fn an_unreachable_endpoint_is_retried_then_reported() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let memo_dir = tempfile::tempdir().unwrap();
    let err = client(&url, 2)
        .send_all(&requests(1), &Memo::new(memo_dir.path()), &identity(), &|| {})
        .unwrap_err();
    assert!(matches!(err, LlmError::GaveUp { attempts: 3, .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn a_client_error_is_not_retried() {
    let server = serve(vec![Answer::Status(401)]);
    let memo_dir = tempfile::tempdir().unwrap();
    let err = client(&server.url, 5)
        .send_all(&requests(1), &Memo::new(memo_dir.path()), &identity(), &|| {})
        .unwrap_err();
    assert!(matches!(err, LlmError::Refused { status: 401, .. }), "{err}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn a_missing_api_key_variable_is_an_error_before_any_call() {
    let backend: HttpBackend = serde_json::from_value(json!({
        "url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "SECVEC_TEST_KEY_THAT_IS_NOT_SET"
    }))
    .unwrap();
    let err = backend.resolve().unwrap_err();
    assert!(matches!(err, LlmError::MissingKey(_)));
    assert!(err.to_string().contains("SECVEC_TEST_KEY_THAT_IS_NOT_SET"), "{err}");
}
