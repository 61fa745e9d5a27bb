//! The model stack on libtorch: devices and dtypes, HF configs and weights, the transformer,
//! LoRA, tokenizers and sampling.

pub mod chat_template;
pub mod config;
pub mod device;
pub mod encoder;
pub mod generate;
pub mod gguf;
pub mod lora;
pub mod materialize;
pub mod sampling;
pub mod task_vector;
pub mod tokenizer;
pub mod train;
pub mod transformer;
pub mod weights;

use std::path::Path;

/// A model ready for inference: weights on `device` in `dtype`, an optional LoRA adapter
/// (merged into the weights, or kept separate), and its tokenizer.
pub fn load_for_inference(
    model_dir: &Path,
    adapter_dir: Option<&Path>,
    device: &str,
    dtype: tch::Kind,
    merge: bool,
) -> anyhow::Result<(transformer::Transformer, tokenizer::TextTokenizer)> {
    let device = device::parse_device(device)?;
    let mut model = transformer::Transformer::load(model_dir, device, dtype)?;
    if let Some(dir) = adapter_dir {
        let adapter = lora::Adapter::load(dir, device)?;
        let how = if merge {
            lora::Attach::Merged
        } else {
            lora::Attach::Unmerged
        };
        adapter.attach(&mut model, how)?;
    }
    let tokenizer = tokenizer::TextTokenizer::load(model_dir, model.config.vocab_size)?;
    Ok((model, tokenizer))
}
