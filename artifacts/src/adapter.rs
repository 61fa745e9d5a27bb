//! `adapter`: a LoRA adapter in PEFT's format. Its Rust type, `secvec_model::lora::Adapter`,
//! holds tensors and lives with the model stack; this names the tag and the files.

pub const TAG: &str = "adapter";
pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
