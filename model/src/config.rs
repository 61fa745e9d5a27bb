//! Hugging Face `config.json` for the architectures secvec runs: Llama (DeepSeek-Coder),
//! Qwen2 (Qwen2.5-Coder) and StarCoder2.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Starcoder2,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Norm {
    Rms { eps: f64 },
    Layer { eps: f64 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Silu,
    GeluTanh,
    Gelu,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (DeepSeek-Coder).
    Linear {
        factor: f64,
    },
    /// Llama 3's frequency-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position: f64,
    },
}

/// What the transformer needs to know, normalised across architectures.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: usize,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub norm: Norm,
    pub activation: Activation,
    /// Biases on q, k and v projections.
    pub qkv_bias: bool,
    /// Bias on the attention output projection.
    pub o_bias: bool,
    /// StarCoder2's MLP is `c_fc`/`c_proj` with biases; the others are gated, without.
    pub gated_mlp: bool,
    pub mlp_bias: bool,
    pub tie_word_embeddings: bool,
    /// Per layer: attend only to the last `w` positions.
    pub sliding_window: Vec<Option<i64>>,
    pub max_position_embeddings: i64,
    pub eos_token_ids: Vec<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: unsupported architecture `{model_type}`; secvec runs llama, qwen2 and starcoder2")]
    Unsupported { path: PathBuf, model_type: String },
    #[error("{path}: unsupported rope scaling `{kind}`; secvec supports default, linear and llama3")]
    Rope { path: PathBuf, kind: String },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

#[derive(Deserialize)]
struct Raw {
    model_type: String,
    vocab_size: i64,
    hidden_size: i64,
    intermediate_size: i64,
    num_hidden_layers: usize,
    num_attention_heads: i64,
    #[serde(default)]
    num_key_value_heads: Option<i64>,
    #[serde(default)]
    head_dim: Option<i64>,
    #[serde(default)]
    rope_theta: Option<f64>,
    /// Older configs: `rope_scaling`; transformers 5 writes `rope_parameters` (with the theta).
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    rms_norm_eps: Option<f64>,
    #[serde(default)]
    norm_epsilon: Option<f64>,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: Option<bool>,
    #[serde(default)]
    use_bias: Option<bool>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    sliding_window: Option<i64>,
    #[serde(default)]
    use_sliding_window: Option<bool>,
    #[serde(default)]
    max_window_layers: Option<usize>,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    #[serde(default)]
    max_position_embeddings: Option<i64>,
    #[serde(default)]
    eos_token_id: Option<serde_json::Value>,
}

impl ModelConfig {
    pub fn from_dir(dir: &Path) -> Result<ModelConfig, ConfigError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        Self::parse(&path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<ModelConfig, ConfigError> {
        let raw: Raw = serde_json::from_str(text).map_err(|source| ConfigError::Json {
            path: path.into(),
            source,
        })?;
        let arch = match raw.model_type.as_str() {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "starcoder2" => Arch::Starcoder2,
            other => {
                return Err(ConfigError::Unsupported {
                    path: path.into(),
                    model_type: other.into(),
                })
            }
        };
        let invalid = |what: String| ConfigError::Invalid {
            path: path.into(),
            what,
        };
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if raw.num_attention_heads <= 0 || raw.hidden_size % raw.num_attention_heads != 0 && raw.head_dim.is_none() {
            return Err(invalid(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                raw.hidden_size, raw.num_attention_heads
            )));
        }
        if num_kv_heads <= 0 || raw.num_attention_heads % num_kv_heads != 0 {
            return Err(invalid(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {num_kv_heads}",
                raw.num_attention_heads
            )));
        }
        let rope = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
        let field = |k: &str| rope.and_then(|r| r.get(k)).and_then(|v| v.as_f64());
        let rope_theta = raw
            .rope_theta
            .or_else(|| field("rope_theta"))
            .unwrap_or(if arch == Arch::Starcoder2 { 100_000.0 } else { 10_000.0 });
        let kind = rope
            .and_then(|r| r.get("rope_type").or_else(|| r.get("type")))
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let rope_scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear {
                factor: field("factor").ok_or_else(|| invalid("linear rope scaling without `factor`".into()))?,
            },
            "llama3" => RopeScaling::Llama3 {
                factor: field("factor").unwrap_or(8.0),
                low_freq_factor: field("low_freq_factor").unwrap_or(1.0),
                high_freq_factor: field("high_freq_factor").unwrap_or(4.0),
                original_max_position: field("original_max_position_embeddings").unwrap_or(8192.0),
            },
            other => {
                return Err(ConfigError::Rope {
                    path: path.into(),
                    kind: other.into(),
                })
            }
        };
        let activation = match raw.hidden_act.as_deref().unwrap_or("silu") {
            "silu" | "swish" => Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_new" => Activation::GeluTanh,
            "gelu" => Activation::Gelu,
            other => return Err(invalid(format!("unsupported hidden_act `{other}`"))),
        };
        let n = raw.num_hidden_layers;
        let sliding_window = (0..n)
            .map(|i| {
                let sliding = match (&raw.layer_types, arch) {
                    (Some(types), _) => types.get(i).map(|t| t == "sliding_attention").unwrap_or(false),
                    // StarCoder2 marks no layer types but applies its window to every layer.
                    (None, Arch::Starcoder2) => true,
                    (None, Arch::Qwen2) => {
                        raw.use_sliding_window.unwrap_or(false) && i >= raw.max_window_layers.unwrap_or(0)
                    }
                    (None, Arch::Llama) => false,
                };
                if sliding {
                    raw.sliding_window
                } else {
                    None
                }
            })
            .collect();
        let use_bias = raw.use_bias.unwrap_or(arch == Arch::Starcoder2);
        let eos_token_ids = eos_ids(raw.eos_token_id.as_ref());
        Ok(ModelConfig {
            arch,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: n,
            num_heads: raw.num_attention_heads,
            num_kv_heads,
            head_dim: raw.head_dim.unwrap_or(raw.hidden_size / raw.num_attention_heads),
            rope_theta,
            rope_scaling,
            norm: match arch {
                Arch::Starcoder2 => Norm::Layer {
                    eps: raw.norm_epsilon.unwrap_or(1e-5),
                },
                _ => Norm::Rms {
                    eps: raw.rms_norm_eps.unwrap_or(1e-6),
                },
            },
            activation,
            qkv_bias: match arch {
                Arch::Qwen2 => true,
                Arch::Llama => raw.attention_bias.unwrap_or(false),
                Arch::Starcoder2 => use_bias,
            },
            o_bias: match arch {
                Arch::Qwen2 => false,
                Arch::Llama => raw.attention_bias.unwrap_or(false),
                Arch::Starcoder2 => use_bias,
            },
            gated_mlp: arch != Arch::Starcoder2,
            mlp_bias: match arch {
                Arch::Starcoder2 => use_bias,
                _ => raw.mlp_bias.unwrap_or(false),
            },
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(arch == Arch::Starcoder2),
            sliding_window,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(4096),
            eos_token_ids,
        })
    }
}

/// `eos_token_id` may be one id or a list.
fn eos_ids(v: Option<&serde_json::Value>) -> Vec<i64> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_i64()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_old_and_new_rope_layouts() {
        let old = r#"{"model_type":"llama","vocab_size":32256,"hidden_size":4096,"intermediate_size":11008,
            "num_hidden_layers":32,"num_attention_heads":32,"rope_theta":100000,
            "rope_scaling":{"type":"linear","factor":4.0},"eos_token_id":32021}"#;
        let c = ModelConfig::parse(Path::new("config.json"), old).unwrap();
        assert_eq!(
            (c.rope_theta, c.rope_scaling),
            (100000.0, RopeScaling::Linear { factor: 4.0 })
        );
        assert_eq!(
            (c.num_kv_heads, c.head_dim, c.eos_token_ids.clone()),
            (32, 128, vec![32021])
        );
        let fixture =
            ModelConfig::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/llama-linear-rope")).unwrap();
        assert_eq!(
            (fixture.rope_theta, fixture.rope_scaling),
            (100000.0, RopeScaling::Linear { factor: 4.0 })
        );
        let sc2 = ModelConfig::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/starcoder2")).unwrap();
        assert_eq!(sc2.sliding_window, vec![Some(8), Some(8)]);
        assert!(!sc2.gated_mlp && sc2.mlp_bias && sc2.qkv_bias && sc2.tie_word_embeddings);
    }

    #[test]
    fn unsupported_architectures_and_rope_types_are_named() {
        let err = ModelConfig::parse(
            Path::new("m/config.json"),
            r#"{"model_type":"gpt2","vocab_size":1,"hidden_size":4,
            "intermediate_size":4,"num_hidden_layers":1,"num_attention_heads":1}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "m/config.json: unsupported architecture `gpt2`; secvec runs llama, qwen2 and starcoder2"
        );
        let err = ModelConfig::parse(Path::new("c.json"), r#"{"model_type":"qwen2","vocab_size":1,"hidden_size":4,
            "intermediate_size":4,"num_hidden_layers":1,"num_attention_heads":1,"rope_scaling":{"type":"yarn","factor":4}}"#)
        .unwrap_err();
        assert!(err.to_string().contains("unsupported rope scaling `yarn`"), "{err}");
    }
}
