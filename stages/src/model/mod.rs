//! The model stack on libtorch: devices and dtypes, HF configs and weights, the transformer,
//! LoRA, tokenizers and sampling.

pub mod config;
pub mod device;
pub mod lora;
pub mod sampling;
pub mod tokenizer;
pub mod transformer;
pub mod weights;
