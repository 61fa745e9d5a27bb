//! Calling LLMs for the stages that need one (Rescue's summaries, cause analyses and drafts):
//! the OpenAI chat-completions wire format, shared by this client and `secvec serve`, and a
//! client that runs many requests with bounded concurrency, retries what can be retried and
//! keeps every response in the cache's memo by the hash of its request.

pub mod backend;
pub mod client;
pub mod wire;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{url}: gave up after {attempts} attempts; the last failure: {what}. Responses obtained so far are kept, and a rerun starts from them")]
    GaveUp { url: String, attempts: u32, what: String },
    #[error("{url} refused the request (HTTP {status}): {body}")]
    Refused { url: String, status: u16, body: String },
    #[error("the API key variable `{0}` (backend.http.api_key_env) is not set: export it before running; the manifest names the variable, never the key")]
    MissingKey(String),
}
