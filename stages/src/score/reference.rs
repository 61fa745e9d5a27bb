//! `reference-samples`: each scenario's reference solution (`test_case.*` beside its functional
//! test) as a sample, to validate the harness: references should pass their tests and be judged
//! secure.

use schemars::JsonSchema;
use secvec_engine::{InputSlot, Stage, StageContext};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceParams {}

pub struct ReferenceSamples;

impl Stage for ReferenceSamples {
    type Params = ReferenceParams;
    const KIND: &'static str = "reference-samples";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str = "Each scenario's reference solution as a sample (harness validation).";

    fn inputs() -> Vec<InputSlot> {
        vec![InputSlot {
            name: "scenarios",
            accepts: &["scenarios"],
            many: false,
            optional: false,
            doc: "a `scenarios` stage",
        }]
    }

    fn output_tags() -> Vec<&'static str> {
        vec!["samples"]
    }

    fn run(&self, _: &ReferenceParams, ctx: &StageContext) -> anyhow::Result<()> {
        let dir = &ctx.input("scenarios").expect("required").path;
        let mut lines = String::new();
        let mut missing = Vec::new();
        for line in std::fs::read_to_string(dir.join("prompts.jsonl"))?.lines() {
            let s: serde_json::Value = serde_json::from_str(line)?;
            let id = s["id"].as_str().unwrap_or_default();
            let lang = s["language"].as_str().unwrap_or("py");
            let path = dir.join("unit_test").join(id).join(format!("test_case.{lang}"));
            match std::fs::read_to_string(&path) {
                Ok(program) => {
                    lines.push_str(&json!({"prompt_id": id, "sample": 0, "program": program}).to_string());
                    lines.push('\n');
                }
                Err(_) => missing.push(id.to_string()),
            }
        }
        ctx.write("samples.jsonl", lines)?;
        ctx.write(
            "missing.json",
            serde_json::to_vec_pretty(&json!({"scenarios_without_reference": missing}))?,
        )?;
        Ok(())
    }
}
