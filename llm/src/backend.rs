//! An OpenAI-compatible endpoint as a manifest names it, and the key it reads from the
//! environment (the manifest names the variable, never the key).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{Endpoint, Policy};
use crate::LlmError;

/// `backend: {http: {...}}` in a stage's params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpBackend {
    /// The API's base URL, up to and including `/v1` (e.g. `http://127.0.0.1:8000/v1`).
    pub url: String,
    /// The model name the endpoint serves.
    pub model: String,
    /// The environment variable holding the API key, if the endpoint needs one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    #[serde(default = "concurrency")]
    pub concurrency: usize,
    /// Seconds one attempt may take.
    #[serde(default = "timeout_s")]
    pub timeout_s: f64,
    /// Attempts after the first, on a timeout, an unreachable endpoint, a 429, a 5xx or a
    /// malformed response.
    #[serde(default = "retries")]
    pub retries: u32,
}

fn concurrency() -> usize {
    4
}
fn timeout_s() -> f64 {
    120.0
}
fn retries() -> u32 {
    5
}

impl HttpBackend {
    /// The endpoint with its key read from the environment, and the retry policy: an error,
    /// before any call, when the named variable is unset.
    pub fn resolve(&self) -> Result<(Endpoint, Policy), LlmError> {
        let api_key = match &self.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| LlmError::MissingKey(var.clone()))?),
            None => None,
        };
        Ok((
            Endpoint {
                url: self.url.trim_end_matches('/').to_string(),
                model: self.model.clone(),
                api_key,
            },
            Policy {
                concurrency: self.concurrency.max(1),
                timeout: Duration::from_secs_f64(self.timeout_s),
                retries: self.retries,
                backoff: Duration::from_millis(500),
            },
        ))
    }

    /// What identifies the model behind the endpoint in the memo's keys.
    pub fn identity(&self) -> serde_json::Value {
        serde_json::json!({"url": self.url.trim_end_matches('/'), "model": self.model})
    }
}
