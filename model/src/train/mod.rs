//! Training LoRA adapters on libtorch: padded batches, token log-probabilities computed chunk by
//! chunk from the hidden states, the losses, and AdamW with PEFT + transformers' semantics.

pub mod batch;
pub mod checkpoint;
pub mod logprobs;
pub mod loss;
pub mod optim;
pub mod peft_parity;
pub mod token_diff;
pub mod trainer;

use tch::{Kind, Tensor};

use crate::transformer::Transformer;

/// Makes the model's unmerged LoRA factors trainable (f32 leaves that record gradients) and returns
/// them by name (`<module>.lora_A` / `.lora_B`), in module order. The base weights stay frozen.
pub fn trainable_parameters(model: &mut Transformer) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (name, lin) in model.linears_mut() {
        if let Some(l) = &mut lin.lora {
            // In f32 whatever the base's dtype, as PEFT trains them: bf16 factors would lose
            // AdamW's small updates. Copies, so training never writes into the adapter that
            // was attached (an f32 attach shares its tensors).
            l.a = l.a.to_kind(Kind::Float).copy().set_requires_grad(true);
            l.b = l.b.to_kind(Kind::Float).copy().set_requires_grad(true);
            out.push((format!("{name}.lora_A"), l.a.shallow_clone()));
            out.push((format!("{name}.lora_B"), l.b.shallow_clone()));
        }
    }
    out
}

/// Switches LoRA dropout on (training) or off.
pub fn set_training(model: &Transformer, on: bool) {
    model.lora_training().store(on, std::sync::atomic::Ordering::Relaxed);
}
