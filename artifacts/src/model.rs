//! `model`: a Hugging Face model directory (`config.json`, `*.safetensors`, `tokenizer.json`).
//! Its Rust type, `secvec_model::transformer::Transformer`, holds tensors and lives with the
//! model stack; this names the tag.

pub const TAG: &str = "model";
