//! `diagnose`: how alike a secure and a vulnerable task vector are (SecVecCoder Table I): cosine
//! similarity and sign agreement, over all modules, per module type and per layer.

use schemars::JsonSchema;
use secvec_artifacts::{adapter, diagnostics, results};
use secvec_stage::{InputSlot, ResultFields, Stage, FILES};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiagnoseParams {
    /// The name the result rows carry as `strategy` (e.g. `SFT`, `LPO`), for tables like Table I.
    #[serde(default)]
    pub strategy: String,
}

pub struct Diagnose;

impl Stage for Diagnose {
    type Params = DiagnoseParams;
    const KIND: &'static str = "diagnose";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str =
        "Cosine similarity and sign agreement of a secure and a vulnerable task vector (Table I).";
    const LIBTORCH: bool = true;

    fn inputs() -> Vec<InputSlot> {
        adapter_pair_slots(false, "the secure adapter (τ_sec), e.g. `lpo@target=secure`")
    }

    fn output_tags() -> Vec<&'static str> {
        vec![diagnostics::TAG, results::TAG]
    }

    fn result_fields(_: &Self::Params) -> Option<ResultFields> {
        Some(ResultFields::rows([
            "strategy",
            "scope",
            "part",
            "cosine",
            "sign_agreement",
            "entries",
        ]))
    }
}

/// The secure and vulnerable adapters a task-vector stage reads.
pub(crate) fn adapter_pair_slots(secure_optional: bool, secure_doc: &'static str) -> Vec<InputSlot> {
    vec![
        InputSlot {
            name: "secure",
            accepts: &[adapter::TAG, FILES],
            many: false,
            optional: secure_optional,
            doc: secure_doc,
        },
        InputSlot {
            name: "vulnerable",
            accepts: &[adapter::TAG, FILES],
            many: false,
            optional: false,
            doc: "the vulnerable adapter (τ_insec), of the same base and modules",
        },
    ]
}
