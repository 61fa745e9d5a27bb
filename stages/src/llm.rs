//! The LLM a stage calls: the model stack, served by `secvec serve` on 127.0.0.1 for the
//! stage's duration, or any OpenAI-compatible endpoint. Either way the stage talks HTTP through
//! one client, so retries, concurrency and the response memo behave the same.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use schemars::JsonSchema;
use secvec_llm::backend::HttpBackend;
use secvec_llm::client::{recall_all, Client, Endpoint, Policy};
use secvec_llm::wire::{ChatRequest, ChatResponse, Message, SamplingFields};
use secvec_stage::StageContext;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use secvec_stage::worker::{drain, tied_command, worker_path, ServeRequest};
use secvec_stage::Dtype;

/// `backend:` in a stage's params: `{local: {...}}` (the default) or `{http: {...}}`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// The stage's `model` input (and `adapter`), served by `secvec serve` while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalBackend>,
    /// An OpenAI-compatible endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpBackend>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalBackend {
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "cpu")]
    pub device: String,
    #[serde(default)]
    pub dtype: Dtype,
}

fn cpu() -> String {
    "cpu".into()
}

impl Default for LocalBackend {
    fn default() -> LocalBackend {
        LocalBackend {
            device: cpu(),
            dtype: Dtype::F32,
        }
    }
}

/// Which backend, once checked.
enum Chosen<'a> {
    Local(LocalBackend),
    Http(&'a HttpBackend),
}

impl Backend {
    fn chosen(&self) -> anyhow::Result<Chosen<'_>> {
        match (&self.local, &self.http) {
            (Some(_), Some(_)) => bail!("`backend` names both `local` and `http`; choose one"),
            (_, Some(h)) => Ok(Chosen::Http(h)),
            (l, None) => Ok(Chosen::Local(l.clone().unwrap_or_default())),
        }
    }

    /// Plan-time checks: one backend is chosen, and an endpoint's API-key variable is set (its
    /// value never enters a key).
    pub fn check(&self) -> anyhow::Result<()> {
        if let Chosen::Http(h) = self.chosen()? {
            h.resolve()?;
        }
        Ok(())
    }
}

/// A backend ready for requests: the identity its responses are memoised under and the model
/// name requests carry. A local server starts at the first request the memo cannot answer and
/// lives as long as the session.
pub struct Session {
    pub identity: Value,
    pub model: String,
    target: Target,
}

enum Target {
    Http(Client),
    Local {
        request: ServeRequest,
        server: Mutex<Option<(Client, Child)>>,
    },
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Target::Local { server, .. } = &mut self.target {
            if let Some((_, child)) = server.get_mut().ok().and_then(|s| s.as_mut()) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Session {
    /// Every request's response, in order, from the memo where it has them (reporting
    /// progress to `ctx`); see [`Client::send_all`].
    pub fn chat_all(&self, requests: &[ChatRequest], ctx: &StageContext) -> anyhow::Result<Vec<ChatResponse>> {
        let total = requests.len() as u64;
        let done = AtomicU64::new(0);
        let on_done = || ctx.progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
        let known = recall_all(requests, ctx.memo(), &self.identity);
        if known.iter().all(Option::is_some) {
            known.iter().for_each(|_| on_done());
            return Ok(known.into_iter().flatten().collect());
        }
        let answers = match &self.target {
            Target::Http(client) => client.complete(requests, known, ctx.memo(), &self.identity, &on_done)?,
            Target::Local { request, server } => {
                let mut server = server.lock().expect("server lock");
                if server.is_none() {
                    *server = Some(start_server(request)?);
                }
                let (client, _) = server.as_ref().expect("started");
                client.complete(requests, known, ctx.memo(), &self.identity, &on_done)?
            }
        };
        Ok(answers)
    }

    /// One single-message request per prompt, with the same sampling; each answer's text,
    /// trimmed.
    pub fn ask(
        &self,
        prompts: Vec<String>,
        sampling: &SamplingFields,
        ctx: &StageContext,
    ) -> anyhow::Result<Vec<String>> {
        let requests: Vec<ChatRequest> = prompts
            .into_iter()
            .map(|prompt| ChatRequest {
                model: self.model.clone(),
                messages: vec![Message::user(prompt)],
                sampling: sampling.clone(),
            })
            .collect();
        Ok(self
            .chat_all(&requests, ctx)?
            .into_iter()
            .map(|a| a.choices[0].message.content.trim().to_string())
            .collect())
    }
}

/// Opens the backend: for `local`, the stage's `model` (and `adapter`), served by `secvec
/// serve` on a free port of 127.0.0.1 once a request needs it.
pub fn open(backend: &Backend, ctx: &StageContext) -> anyhow::Result<Session> {
    match backend.chosen()? {
        Chosen::Http(h) => {
            let (endpoint, policy) = h.resolve()?;
            Ok(Session {
                model: endpoint.model.clone(),
                identity: h.identity(),
                target: Target::Http(Client::new(endpoint, policy)),
            })
        }
        Chosen::Local(l) => {
            let Some(model) = ctx.input("model") else {
                bail!("`backend: local` serves the stage's `model` input; bind `model` to a model stage or an HF model directory");
            };
            let adapter = ctx.input("adapter");
            Ok(Session {
                identity: json!({
                    "local": {
                        "model": model.digest.hex(),
                        "adapter": adapter.map(|a| a.digest.hex()),
                        "device": l.device,
                        "dtype": l.dtype,
                    }
                }),
                model: "local".into(),
                target: Target::Local {
                    request: ServeRequest {
                        model: model.path.clone(),
                        adapter: adapter.map(|a| a.path.clone()),
                        host: "127.0.0.1".into(),
                        port: 0,
                        device: l.device.clone(),
                        dtype: l.dtype,
                        name: Some("local".into()),
                        kv_budget_mib: None,
                        batch_size: None,
                    },
                    server: Mutex::new(None),
                },
            })
        }
    }
}

/// Starts `secvec serve` and waits until it listens.
fn start_server(request: &ServeRequest) -> anyhow::Result<(Client, Child)> {
    let exe = worker_path()?;
    let mut child = tied_command(&exe)
        .arg("serve")
        .arg(serde_json::to_string(request)?)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stderr = drain(child.stderr.take().expect("piped"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let Some(url) = line
        .strip_prefix("listening on ")
        .and_then(|l| l.split_whitespace().next())
    else {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = stderr.join().unwrap_or_default();
        bail!("the local model server did not start: {}", stderr.trim());
    };
    let endpoint = Endpoint {
        url: url.to_string(),
        model: "local".into(),
        api_key: None,
    };
    // The server decodes concurrent requests in one batch, each answered as it would be alone;
    // a long generation is not a timeout.
    let policy = Policy {
        concurrency: 16,
        timeout: Duration::from_secs(3600),
        retries: 1,
        backoff: Duration::from_millis(200),
    };
    Ok((Client::new(endpoint, policy), child))
}
