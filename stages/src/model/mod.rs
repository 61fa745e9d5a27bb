//! The model stack on libtorch: devices and dtypes, HF configs and weights, the transformer,
//! LoRA, tokenizers and sampling.

pub mod device;
pub mod config;
pub mod weights;
pub mod transformer;
pub mod sampling;
