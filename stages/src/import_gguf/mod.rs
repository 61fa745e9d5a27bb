//! `import-gguf`: a llama model in llama.cpp's GGUF format (F32, F16, BF16, Q4_0, Q4_1, Q8_0)
//! as a Hugging Face model directory in f32, with its tokenizer rebuilt from the GGUF vocabulary.

use schemars::JsonSchema;
use secvec_artifacts::model;
use secvec_stage::{InputSlot, Stage, FILES};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportGgufParams {}

pub struct ImportGguf;

impl Stage for ImportGguf {
    type Params = ImportGgufParams;
    const KIND: &'static str = "import-gguf";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str =
        "A llama GGUF file (e.g. SmolLM2-135M-Instruct Q4_1) dequantised into a Hugging Face model directory.";
    const LIBTORCH: bool = true;

    fn inputs() -> Vec<InputSlot> {
        vec![InputSlot {
            name: "gguf",
            accepts: &[FILES],
            many: false,
            optional: false,
            doc: "a .gguf file",
        }]
    }

    fn output_tags() -> Vec<&'static str> {
        vec![model::TAG]
    }
}
