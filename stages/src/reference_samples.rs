//! `reference-samples`: each scenario's reference solution (`test_case.*` beside its functional
//! test) as a sample, to validate the harness: references should pass their tests and be judged
//! secure.

use schemars::JsonSchema;
use secvec_artifacts::samples::{self, Sample};
use secvec_artifacts::scenarios;
use secvec_stage::{InputSlot, Stage, StageContext};
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
            accepts: &[scenarios::TAG],
            many: false,
            optional: false,
            doc: "a `scenarios` stage",
        }]
    }

    fn output_tags() -> Vec<&'static str> {
        vec![samples::TAG]
    }

    fn run(&self, _: &ReferenceParams, ctx: &StageContext) -> anyhow::Result<()> {
        let dir = &ctx.required("scenarios")?.path;
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for (id, scenario) in scenarios::read(dir)? {
            let path = scenarios::unit_test_dir(dir, &id).join(format!("test_case.{}", scenario.language));
            match std::fs::read_to_string(&path) {
                Ok(program) => found.push(Sample {
                    prompt_id: id,
                    sample: 0,
                    text: String::new(),
                    program: Some(program),
                    generation: None,
                }),
                Err(_) => missing.push(id),
            }
        }
        samples::write(ctx, &found)?;
        ctx.write(
            "missing.json",
            serde_json::to_vec_pretty(&json!({"scenarios_without_reference": missing}))?,
        )?;
        Ok(())
    }
}
