//! `train`: a LoRA adapter trained from a frozen base model on secure/vulnerable pairs, by SFT,
//! LPO or SafeCoder-style tuning (SecVecCoder §III-C, Table III). Its libtorch run, `run.rs`,
//! runs in `secvec-worker`.

use schemars::JsonSchema;
use secvec_artifacts::{adapter, model, pairs, results};
use secvec_stage::{Dtype, InputSlot, Resources, ResultFields, Stage, FILES};
use serde::{Deserialize, Serialize};

use crate::device;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Likelihood of the target completion, prompt masked out (Eq. 9).
    Sft,
    /// Localised preference optimisation (Eqs. 10–12), from the matching SFT adapter.
    Lpo,
    /// SafeCoder's likelihood / unlikelihood objective with instruction data.
    Safecoder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Secure,
    Vulnerable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    Linear,
    Cosine,
    Constant,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LpoScore {
    /// The paper's: changed tokens' log-probabilities divided by the completion's length.
    #[default]
    Mean,
    /// The reference code's: changed tokens weighted 0.9, others 0.1, divided by the weights.
    Weighted,
}

/// Params of `train`; unset ones take the paper's Table III values for the method.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    pub method: Method,
    /// Which completion the adapter learns to prefer.
    pub target: Target,
    #[serde(default = "d_r")]
    pub r: i64,
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    /// Module names LoRA adapts (default: every attention and MLP projection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_modules: Option<Vec<String>>,
    /// SFT 2, LPO 3, SafeCoder 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// SFT 2e-5, LPO 1e-5, SafeCoder 2e-5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// Examples (pairs, for LPO) per optimiser step: SFT 32, LPO 16, SafeCoder 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Examples per forward pass; gradients accumulate up to `batch_size` (the same sum, up to
    /// the order of floating-point additions).
    #[serde(default = "d_micro")]
    pub micro_batch_size: usize,
    /// Warmup as a share of all steps (SFT 0.05); `warmup_steps` wins when set (LPO 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<usize>,
    /// SFT cosine, LPO cosine, SafeCoder linear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<Scheduler>,
    /// SFT 0, LPO 0.05, SafeCoder 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// SFT 0.3, LPO 0.3, SafeCoder 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grad_norm: Option<f64>,
    /// Longer examples are skipped and counted.
    #[serde(default = "d_max_length")]
    pub max_length: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "crate::generate::d_device")]
    pub device: String,
    #[serde(default)]
    pub dtype: Dtype,
    /// LPO's ε, β, γ (0.05, 10.0, 5.4) and score.
    #[serde(default = "d_epsilon")]
    pub epsilon: f64,
    #[serde(default = "d_beta")]
    pub beta: f64,
    #[serde(default = "d_gamma")]
    pub gamma: f64,
    #[serde(default)]
    pub lpo_score: LpoScore,
    /// SafeCoder: weight of the security losses, and the size every (language, CWE) group is
    /// upsampled to.
    #[serde(default = "d_loss_weight")]
    pub loss_weight: f64,
    #[serde(default = "d_upsample")]
    pub upsample_to: usize,
    /// Optimiser steps between checkpoints (0: none). A killed training resumes from the last
    /// one on the next run, and ends with the same adapter.
    #[serde(default = "d_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Measure LPO's mean score margin on the held-out (`val`) pairs every this many optimiser
    /// steps and after the last, into the training log and the results (rows of `step` and
    /// `held_out_margin`, step 0 before training): the curve of what LPO optimises, for any
    /// method. Each costs a forward pass over the held-out pairs. Unset: LPO measures before and
    /// after only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<usize>,
    /// Keep only each layer's input and recompute its activations in the backward pass: less
    /// memory for about a third more compute. The adapter is the same either way.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// The file of pairs inside the `pairs` input.
    #[serde(default = "d_pairs_file")]
    pub pairs_file: String,
    /// SafeCoder: use only the first N instruction examples that fit `max_length` (a subset
    /// for small machines); all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instructions: Option<usize>,
}

fn d_r() -> i64 {
    16
}
fn d_alpha() -> f64 {
    32.0
}
fn d_dropout() -> f64 {
    0.1
}
fn d_micro() -> usize {
    4
}
fn d_max_length() -> usize {
    1024
}
fn d_epsilon() -> f64 {
    0.05
}
fn d_beta() -> f64 {
    10.0
}
fn d_gamma() -> f64 {
    5.4
}
fn d_loss_weight() -> f64 {
    1.0
}
fn d_upsample() -> usize {
    20
}
fn d_checkpoint_every() -> usize {
    50
}
fn d_pairs_file() -> String {
    "train.jsonl".into()
}

/// Table III's value for a method, where the params leave one unset.
pub struct Resolved {
    pub epochs: usize,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub scheduler: Scheduler,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
}

impl TrainParams {
    pub fn resolved(&self) -> Resolved {
        let (epochs, learning_rate, batch_size, scheduler, weight_decay, max_grad_norm) = match self.method {
            Method::Sft => (2, 2e-5, 32, Scheduler::Cosine, 0.0, 0.3),
            Method::Lpo => (3, 1e-5, 16, Scheduler::Cosine, 0.05, 0.3),
            Method::Safecoder => (2, 2e-5, 16, Scheduler::Linear, 0.0, 1.0),
        };
        Resolved {
            epochs: self.epochs.unwrap_or(epochs),
            learning_rate: self.learning_rate.unwrap_or(learning_rate),
            batch_size: self.batch_size.unwrap_or(batch_size),
            scheduler: self.scheduler.unwrap_or(scheduler),
            weight_decay: self.weight_decay.unwrap_or(weight_decay),
            max_grad_norm: self.max_grad_norm.unwrap_or(max_grad_norm),
        }
    }

    /// Warmup steps out of `total`: `warmup_steps`, else the ratio (SFT's 0.05, LPO's 10 steps).
    pub fn warmup(&self, total: usize) -> usize {
        match (self.warmup_steps, self.warmup_ratio, self.method) {
            (Some(n), _, _) => n,
            (None, Some(r), _) => (r * total as f64).ceil() as usize,
            (None, None, Method::Lpo) => 10.min(total),
            (None, None, _) => (0.05 * total as f64).ceil() as usize,
        }
    }
}

pub struct Train;

impl Stage for Train {
    type Params = TrainParams;
    const KIND: &'static str = "train";
    const VERSION: u32 = 1;
    // Checkpoints only save the state; resuming from one gives the same adapter.
    const SPEED_PARAMS: &'static [&'static str] = &["checkpoint_every", "gradient_checkpointing"];
    const DESCRIPTION: &'static str =
        "A LoRA adapter (PEFT format) trained by SFT, LPO or SafeCoder-style tuning, with its training log.";
    const LIBTORCH: bool = true;

    fn inputs() -> Vec<InputSlot> {
        vec![
            InputSlot {
                name: "model",
                accepts: &[model::TAG, FILES],
                many: false,
                optional: false,
                doc: "the frozen base model (a Hugging Face directory)",
            },
            InputSlot {
                name: "pairs",
                accepts: &[pairs::TAG, FILES],
                many: false,
                optional: false,
                doc: "secure/vulnerable pairs from `pair` (see `pairs_file`)",
            },
            InputSlot {
                name: "init",
                accepts: &[adapter::TAG, FILES],
                many: false,
                optional: true,
                doc: "LPO: the matching SFT adapter, merged into the base before a fresh LoRA is trained on top",
            },
            InputSlot {
                name: "instructions",
                accepts: &[FILES],
                many: false,
                optional: true,
                doc: "SafeCoder: instruction data, JSONL of {instruction, input?, output}",
            },
        ]
    }

    fn output_tags() -> Vec<&'static str> {
        vec![adapter::TAG, results::TAG]
    }

    fn result_fields(_: &Self::Params) -> Option<ResultFields> {
        Some(ResultFields::rows([
            "method",
            "target",
            "examples",
            "skipped",
            "steps",
            "epochs",
            "final_loss",
            "tokens",
            "device",
            "lpo_margin_before",
            "lpo_margin_after",
            "init_rank",
            "samples",
            "step",
            "held_out_margin",
        ]))
    }

    fn resources(p: &TrainParams) -> Resources {
        device::resources(&p.device)
    }

    fn environment(p: &mut TrainParams) -> anyhow::Result<serde_json::Value> {
        Ok(device::settle(&mut p.device)?)
    }
}
