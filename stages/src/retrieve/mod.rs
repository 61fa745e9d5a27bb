//! `retrieve`: Rescue's hierarchical retrieval (§2.2) for every task, or the SecCoder baseline's
//! single dense lookup. Per task it asks the LLM for a vulnerability-cause analysis, extracts the
//! draft's API calls in the sandbox (`secvec-parse`), embeds cause, draft and knowledge base with
//! the encoder, and ranks CWEs then examples (`secvec_retrieval::hierarchy`). It runs in the
//! worker, which holds the encoder.

use schemars::JsonSchema;
use secvec_artifacts::{kb, prompts, results, samples};
use secvec_retrieval::fusion::Thresholds;
use secvec_retrieval::hierarchy::FacetKind;
use secvec_stage::{InputSlot, Resources, ResultFields, Stage, FILES};
use serde::{Deserialize, Serialize};

use crate::device;
use crate::kb_summarize::Code;
use crate::llm::Backend;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// CWE level, then code level, over the knowledge base (Rescue).
    #[default]
    Rescue,
    /// The one secure function most like the task (dense, whole functions, no threshold):
    /// the SecCoder baseline.
    Seccoder,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrieveParams {
    #[serde(default)]
    pub strategy: Strategy,
    /// The facets fused (Rescue Table 3 drops some); `code` takes part in step 2 only.
    #[serde(default = "all_facets")]
    pub facets: Vec<FacetKind>,
    /// The score a candidate needs in a facet for that facet to count.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// RRF's smoothing constant.
    #[serde(default = "rrf_k")]
    pub rrf_k: f64,
    /// CWEs step 1 keeps (Rescue: 4); 0 skips step 1 and ranks every example.
    #[serde(default = "top_cwes")]
    pub top_cwes: usize,
    /// The examples' code retrieval compares with (APIs and code facet): `sliced` (Rescue) or
    /// `original` (whole functions: "w/o ps_retrieval").
    #[serde(default = "sliced")]
    pub code: Code,
    /// The LLM that writes each task's vulnerability-cause analysis.
    #[serde(default)]
    pub backend: Backend,
    #[serde(default = "max_tokens")]
    pub max_tokens: usize,
    #[serde(default)]
    pub temperature: f64,
    #[serde(default)]
    pub seed: u64,
    /// The encoder's device.
    #[serde(default = "crate::generate::d_device")]
    pub device: String,
    /// Texts embedded together.
    #[serde(default = "batch")]
    pub batch_size: usize,
}

fn all_facets() -> Vec<FacetKind> {
    vec![FacetKind::Api, FacetKind::Cause, FacetKind::Code]
}
fn rrf_k() -> f64 {
    secvec_retrieval::fusion::K
}
fn top_cwes() -> usize {
    4
}
fn sliced() -> Code {
    Code::Sliced
}
fn max_tokens() -> usize {
    256
}
fn batch() -> usize {
    32
}

impl RetrieveParams {
    pub fn uses(&self, f: FacetKind) -> bool {
        self.strategy == Strategy::Rescue && self.facets.contains(&f)
    }
}

pub struct Retrieve;

impl Stage for Retrieve {
    type Params = RetrieveParams;
    const KIND: &'static str = "retrieve";
    const VERSION: u32 = 1;
    const SPEED_PARAMS: &'static [&'static str] = &["batch_size"];
    const DESCRIPTION: &'static str =
        "Rescue's hierarchical retrieval (cause, API and code facets, thresholded RRF) or SecCoder's dense lookup, per task.";
    const LIBTORCH: bool = true;

    fn inputs() -> Vec<InputSlot> {
        let mut slots = vec![
            InputSlot {
                name: "tasks",
                accepts: &[prompts::TAG],
                many: false,
                optional: false,
                doc: "the tasks: scenario prompts (a `scenarios` stage)",
            },
            InputSlot {
                name: "drafts",
                accepts: &[samples::TAG, FILES],
                many: false,
                optional: true,
                doc: "zero-shot completions of the tasks (a `generate` stage; the first sample of each task is its draft); the API and code facets need them",
            },
            InputSlot {
                name: "examples",
                accepts: &[kb::TAG],
                many: false,
                optional: false,
                doc: "the knowledge base's examples (a `kb-slice` stage)",
            },
            InputSlot {
                name: "summaries",
                accepts: &[kb::SUMMARIES_TAG],
                many: false,
                optional: true,
                doc: "the knowledge base's per-CWE summaries (a `kb-summarize` stage); the cause facet and the guidelines need them",
            },
            InputSlot {
                name: "encoder",
                accepts: &[FILES],
                many: false,
                optional: false,
                doc: "a sentence-transformers folder (e.g. .models/minilm)",
            },
            InputSlot {
                name: "prompt",
                accepts: &[FILES],
                many: false,
                optional: true,
                doc: "the cause-analysis prompt (a text file with {language}, {description}, {code}); the cause facet needs it",
            },
        ];
        slots.extend(crate::generate::model_slots().into_iter().map(|mut s| {
            s.optional = true;
            s.doc = match s.name {
                "model" => "the LLM for `backend: local`: a model stage or an HF model directory",
                _ => "a LoRA adapter for the local model",
            };
            s
        }));
        slots
    }

    fn output_tags() -> Vec<&'static str> {
        vec![kb::RETRIEVED_TAG, results::TAG]
    }

    fn result_fields(_: &Self::Params) -> Option<ResultFields> {
        Some(ResultFields::rows([
            "id",
            "set",
            "cwe",
            "retrieved",
            "retrieved_cwe",
            "cwe_hit",
            "cwes_kept",
            "best_api",
            "best_cause",
            "best_code",
        ]))
    }

    fn resources(p: &RetrieveParams) -> Resources {
        device::resources(&p.device)
    }

    fn environment(p: &mut RetrieveParams) -> anyhow::Result<serde_json::Value> {
        if p.uses(FacetKind::Cause) {
            p.backend.check()?;
        }
        Ok(device::settle(&mut p.device)?)
    }
}
