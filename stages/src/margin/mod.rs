//! `margin`: how far a model prefers the secure side of held-out pairs, as LPO's score defines
//! it (SecVecCoder Eq. 10): per pair, s(c⁺) − s(c⁻), where s sums the log-probabilities of the
//! tokens that differ from the other side and divides by the completion's length. Training that
//! works moves it: up for a secure adapter, down for a vulnerable one. Per-pair margins, and
//! their mean with a bootstrap interval over pairs.

use schemars::JsonSchema;
use secvec_artifacts::pairs;
use secvec_stage::{Dtype, InputSlot, ParamError, Resources, ResultFields, Stage, Upstreams, FILES};
use serde::{Deserialize, Serialize};

use crate::device;
use crate::generate::{d_device, model_slots};
use crate::interval;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MarginParams {
    /// Which split of the `pair` stage to measure (`val`: held out from training).
    #[serde(default = "d_split")]
    pub split: String,
    /// Pairs longer than this (prompt and the longer side, in tokens) are left out and counted.
    #[serde(default = "d_max_length")]
    pub max_length: usize,
    /// Bootstrap resamples (over pairs) behind the mean's interval.
    #[serde(default = "interval::d_bootstrap")]
    pub bootstrap: usize,
    #[serde(default = "interval::d_confidence")]
    pub confidence: f64,
    #[serde(default)]
    pub bootstrap_seed: u64,
    #[serde(default = "d_device")]
    pub device: String,
    #[serde(default)]
    pub dtype: Dtype,
}

fn d_split() -> String {
    "val".into()
}
fn d_max_length() -> usize {
    1024
}

pub struct Margin;

impl Stage for Margin {
    type Params = MarginParams;
    const KIND: &'static str = "margin";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str =
        "The LPO score margin s(secure) − s(vulnerable) of held-out pairs under a model, per pair and on average with a bootstrap interval.";
    const LIBTORCH: bool = true;

    fn inputs() -> Vec<InputSlot> {
        let mut slots = model_slots();
        slots.push(InputSlot {
            name: "pairs",
            accepts: &[pairs::TAG, FILES],
            many: false,
            optional: false,
            doc: "a `pair` stage (or a folder of its split files)",
        });
        slots
    }

    fn output_tags() -> Vec<&'static str> {
        vec!["results"]
    }

    fn check(p: &MarginParams, _: &Upstreams) -> Result<(), ParamError> {
        // It names a file of the `pair` stage's folder: a path here would read outside it.
        if p.split.is_empty()
            || !p
                .split
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ParamError::new(
                "split",
                format!(
                    "`{}` is not a split name; give one of the pair stage's splits, e.g. val",
                    p.split
                ),
            ));
        }
        interval::check(p.bootstrap, p.confidence)
    }

    fn result_fields(_: &MarginParams) -> Option<ResultFields> {
        Some(ResultFields::rows(["pair", "language", "cwe", "margin"]).with_sets([
            "set",
            "pairs",
            "skipped",
            "margin",
            "margin_lo",
            "margin_hi",
        ]))
    }

    fn resources(p: &MarginParams) -> Resources {
        device::resources(&p.device)
    }

    fn environment(p: &mut MarginParams) -> anyhow::Result<serde_json::Value> {
        Ok(device::settle(&mut p.device)?)
    }
}
