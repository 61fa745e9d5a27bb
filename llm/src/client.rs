//! Requests to an OpenAI-compatible endpoint (chat and plain completions): bounded
//! concurrency, retries with exponential backoff (or the server's `Retry-After`) on what a retry
//! can fix, and every response kept in the memo as soon as it arrives.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use secvec_cache::{Digest, Memo};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::wire::{ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, ModelList};
use crate::LlmError;

/// A kind of request: where it goes and what answers it.
pub trait Call: Serialize + Sync {
    type Response: Serialize + DeserializeOwned + Send;
    /// After the base URL.
    const PATH: &'static str;
    /// Whether a response holds an answer (a 200 with no choices is retried).
    fn answered(response: &Self::Response) -> bool;
}

impl Call for ChatRequest {
    type Response = ChatResponse;
    const PATH: &'static str = "/chat/completions";
    fn answered(response: &ChatResponse) -> bool {
        !response.choices.is_empty()
    }
}

impl Call for CompletionRequest {
    type Response = CompletionResponse;
    const PATH: &'static str = "/completions";
    fn answered(response: &CompletionResponse) -> bool {
        !response.choices.is_empty()
    }
}

/// Where requests go.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Base URL up to and including `/v1`, without a trailing slash.
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
}

/// How requests are sent.
#[derive(Clone, Debug)]
pub struct Policy {
    pub concurrency: usize,
    /// One attempt's limit.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// The first wait; each retry doubles it, up to 30 s.
    pub backoff: Duration,
}

/// Why one attempt failed.
enum Attempt {
    /// Worth another try: the reason, and how long the server asked us to wait.
    Retry(String, Option<Duration>),
    /// Retrying cannot help (a 4xx other than 429).
    Fatal(LlmError),
}

pub struct Client {
    agent: ureq::Agent,
    endpoint: Endpoint,
    policy: Policy,
}

impl Client {
    pub fn new(endpoint: Endpoint, policy: Policy) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(policy.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Client {
            agent,
            endpoint,
            policy,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// One exchange: a POST of `body`, or a GET without one; the body of a 2xx answer.
    fn attempt(&self, url: &str, body: Option<&[u8]>) -> Result<String, Attempt> {
        let sent = match body {
            Some(body) => {
                let mut request = self.agent.post(url).header("Content-Type", "application/json");
                if let Some(key) = &self.endpoint.api_key {
                    request = request.header("Authorization", format!("Bearer {key}"));
                }
                request.send(body)
            }
            None => {
                let mut request = self.agent.get(url);
                if let Some(key) = &self.endpoint.api_key {
                    request = request.header("Authorization", format!("Bearer {key}"));
                }
                request.call()
            }
        };
        let mut response = sent.map_err(|e| Attempt::Retry(e.to_string(), None))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, 60.0)));
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Attempt::Retry(format!("reading the response: {e}"), None))?;
        match status {
            200..=299 => Ok(text),
            429 | 500..=599 => Err(Attempt::Retry(
                format!("HTTP {status}: {}", excerpt(&text)),
                retry_after,
            )),
            _ => Err(Attempt::Fatal(LlmError::Refused {
                url: url.to_string(),
                status,
                body: excerpt(&text),
            })),
        }
    }

    /// `attempt` until it succeeds, fails for good, or the policy's retries are spent.
    fn retrying<T>(&self, url: String, mut attempt: impl FnMut(&str) -> Result<T, Attempt>) -> Result<T, LlmError> {
        let mut wait = self.policy.backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match attempt(&url) {
                Ok(r) => return Ok(r),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(what, asked)) => {
                    if attempts > self.policy.retries {
                        return Err(LlmError::GaveUp { url, attempts, what });
                    }
                    std::thread::sleep(asked.unwrap_or(wait));
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// One request, retried as the policy allows.
    pub fn send<R: Call>(&self, request: &R) -> Result<R::Response, LlmError> {
        let body = serde_json::to_vec(request).expect("requests serialise");
        self.retrying(format!("{}{}", self.endpoint.url, R::PATH), |url| {
            let text = self.attempt(url, Some(&body))?;
            let parsed: R::Response = serde_json::from_str(&text)
                .map_err(|e| Attempt::Retry(format!("malformed response ({e}): {}", excerpt(&text)), None))?;
            if !R::answered(&parsed) {
                return Err(Attempt::Retry("malformed response: no choices".into(), None));
            }
            Ok(parsed)
        })
    }

    /// The models the endpoint serves (`GET /models`), retried as the policy allows: whether
    /// it can be reached at all, before any work is sent to it.
    pub fn models(&self) -> Result<ModelList, LlmError> {
        self.retrying(format!("{}/models", self.endpoint.url), |url| {
            let text = self.attempt(url, None)?;
            serde_json::from_str(&text)
                .map_err(|e| Attempt::Retry(format!("malformed model list ({e}): {}", excerpt(&text)), None))
        })
    }

    /// What the server says about itself where it has a place for that, at the root above
    /// `/v1`: llama.cpp's `/props`, vLLM's `/version`. `Null` for each it does not answer
    /// (an API such as OpenAI's answers neither); asked once, not retried.
    pub fn reported(&self) -> Value {
        let root = self.endpoint.url.trim_end_matches("/v1");
        let ask = |path: &str| {
            self.attempt(&format!("{root}{path}"), None)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .unwrap_or(Value::Null)
        };
        json!({"props": ask("/props"), "version": ask("/version")})
    }

    /// Every request's response, in order. Memoised responses are not sent again; the rest go
    /// `concurrency` at a time, each memoised as it arrives, so a failure or a kill loses
    /// nothing obtained. `identity` names the model behind the endpoint in the memo's keys;
    /// `on_done` hears of each response.
    pub fn send_all<R: Call>(
        &self,
        requests: &[R],
        memo: &Memo,
        identity: &Value,
        on_done: &(dyn Fn() + Sync),
    ) -> Result<Vec<R::Response>, LlmError> {
        self.complete(requests, recall_all(requests, memo, identity), memo, identity, on_done)
    }

    /// [`Client::send_all`] for a caller that has already looked in the memo: `known` holds
    /// each request's memoised response, if any ([`recall_all`]).
    pub fn complete<R: Call>(
        &self,
        requests: &[R],
        known: Vec<Option<R::Response>>,
        memo: &Memo,
        identity: &Value,
        on_done: &(dyn Fn() + Sync),
    ) -> Result<Vec<R::Response>, LlmError> {
        let keys: Vec<_> = requests.iter().map(|r| memo_key(identity, r)).collect();
        let results: Mutex<Vec<Option<R::Response>>> = Mutex::new(known);
        let missing: Vec<usize> = {
            let r = results.lock().expect("results lock");
            for _ in r.iter().flatten() {
                on_done();
            }
            (0..requests.len()).filter(|&i| r[i].is_none()).collect()
        };
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<LlmError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.policy.concurrency.min(missing.len()) {
                s.spawn(|| loop {
                    let at = next.fetch_add(1, Ordering::Relaxed);
                    if at >= missing.len() || failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = missing[at];
                    match self.send(&requests[i]) {
                        Ok(response) => {
                            let bytes = serde_json::to_vec(&response).expect("responses serialise");
                            // A memo that cannot be written costs a rerun, not this run.
                            let _ = memo.put(&keys[i], &bytes);
                            results.lock().expect("results lock")[i] = Some(response);
                            on_done();
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().expect("error lock").get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().expect("error lock") {
            return Err(e);
        }
        Ok(results
            .into_inner()
            .expect("results lock")
            .into_iter()
            .map(|r| r.expect("every request answered"))
            .collect())
    }
}

fn memo_key(identity: &Value, request: &impl Serialize) -> Digest {
    Memo::key(&json!({"endpoint": identity, "request": request}))
}

fn recall<T: DeserializeOwned>(memo: &Memo, key: &Digest) -> Option<T> {
    memo.get(key).and_then(|b| serde_json::from_slice(&b).ok())
}

/// Each request's memoised response, if any: which requests need a backend at all.
pub fn recall_all<R: Call>(requests: &[R], memo: &Memo, identity: &Value) -> Vec<Option<R::Response>> {
    requests.iter().map(|r| recall(memo, &memo_key(identity, r))).collect()
}

/// The start of a body, for error messages.
fn excerpt(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &t[..at]),
        None => t.to_string(),
    }
}
