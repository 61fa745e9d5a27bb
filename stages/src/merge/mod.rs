//! `merge`: steers the base model with task vectors (SecVecCoder Eqs. 2–5),
//! W_steered = W_base + α τ_sec − θ τ_insec, written as one PEFT adapter that is exactly that
//! update (the inputs' factors stacked along the rank, as PEFT's `cat` combination), or as the
//! whole steered model.

use schemars::JsonSchema;
use secvec_artifacts::{adapter, model, results};
use secvec_stage::{InputSlot, ResultFields, Stage, FILES};
use serde::{Deserialize, Serialize};

use crate::diagnose::adapter_pair_slots;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeParams {
    /// Sets α: `negation` 0, `contrast` θ, `secure-anchored` 1.
    pub operator: Operator,
    /// The strength θ of the vulnerable vector's subtraction.
    pub theta: f64,
    /// α, when set, instead of the operator's (e.g. θ = 0 for "without θτ_insec").
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Write the whole steered model (an HF model directory, from the `model` input) instead
    /// of the adapter.
    #[serde(default)]
    pub materialize: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Operator {
    Negation,
    Contrast,
    SecureAnchored,
}

impl Operator {
    pub fn name(self) -> &'static str {
        match self {
            Operator::Negation => "negation",
            Operator::Contrast => "contrast",
            Operator::SecureAnchored => "secure-anchored",
        }
    }
}

impl MergeParams {
    /// The weight of τ_sec.
    pub fn alpha(&self) -> f64 {
        self.alpha.unwrap_or(match self.operator {
            Operator::Negation => 0.0,
            Operator::Contrast => self.theta,
            Operator::SecureAnchored => 1.0,
        })
    }
}

pub struct Merge;

impl Stage for Merge {
    type Params = MergeParams;
    const KIND: &'static str = "merge";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str =
        "Steering merge W_base + α τ_sec − θ τ_insec (negation, contrast, secure-anchored) as one exact LoRA adapter.";
    const LIBTORCH: bool = true;

    fn inputs() -> Vec<InputSlot> {
        let mut slots = adapter_pair_slots(true, "the secure adapter (τ_sec); needed unless α is 0");
        slots.push(InputSlot {
            name: "model",
            accepts: &[model::TAG, FILES],
            many: false,
            optional: true,
            doc: "the base model the adapters were trained on (for `materialize: true`)",
        });
        slots
    }

    fn output_tags() -> Vec<&'static str> {
        vec![adapter::TAG, model::TAG, results::TAG]
    }

    fn result_fields(_: &Self::Params) -> Option<ResultFields> {
        Some(ResultFields::rows([
            "operator",
            "alpha",
            "theta",
            "rank",
            "materialized",
        ]))
    }
}
