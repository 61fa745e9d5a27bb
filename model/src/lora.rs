//! LoRA adapters in PEFT's exact format (`adapter_config.json` + `adapter_model.safetensors`,
//! keys `base_model.model.<module>.lora_A.weight` `[r, in]` and `.lora_B.weight` `[out, r]`,
//! scaling `alpha / r`), so adapters move freely between secvec, PEFT and vLLM.

use secvec_artifacts::adapter;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::transformer::{LoraWeights, Transformer};
use super::weights::{Weights, WeightsError};

/// LoRA hyperparameters; the defaults are the SecVecCoder paper's (r 16, alpha 32, dropout 0.1)
/// on every attention and MLP projection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    #[serde(default = "default_r")]
    pub r: i64,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Module names to adapt (PEFT matches them against the end of each module path).
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
}

fn default_r() -> i64 {
    16
}
fn default_alpha() -> f64 {
    32.0
}
fn default_dropout() -> f64 {
    0.1
}
fn default_targets() -> Vec<String> {
    [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "c_fc",
        "c_proj",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: default_r(),
            alpha: default_alpha(),
            dropout: default_dropout(),
            target_modules: default_targets(),
        }
    }
}

impl LoraConfig {
    pub fn scaling(&self) -> f64 {
        self.alpha / self.r as f64
    }
    fn targets(&self, module: &str) -> bool {
        let last = module.rsplit('.').next().unwrap_or(module);
        self.target_modules
            .iter()
            .any(|t| t == last || module.ends_with(&format!(".{t}")))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {what}")]
    Config { path: PathBuf, what: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("adapter module `{module}` is not a projection of this model")]
    UnknownModule { module: String },
    #[error("adapter module `{module}`: lora_{which} has shape {got:?}, the model needs {want:?}")]
    Shape {
        module: String,
        which: &'static str,
        got: Vec<i64>,
        want: Vec<i64>,
    },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// How an adapter joins the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// Kept as separate low-rank factors (for training).
    Unmerged,
    /// Folded into the base weights at load time: no per-token overhead (for inference).
    Merged,
}

/// One LoRA adapter: A and B per adapted module.
pub struct Adapter {
    pub config: LoraConfig,
    pub base_model: String,
    /// Module path (`model.layers.0.self_attn.q_proj`) → (A `[r, in]`, B `[out, r]`).
    pub modules: BTreeMap<String, (Tensor, Tensor)>,
}

const PREFIX: &str = "base_model.model.";

impl Adapter {
    /// A fresh adapter for `model` initialised as PEFT does: A Kaiming-uniform, B zero (so the
    /// adapted model starts equal to the base), drawn from `seed`.
    pub fn init(model: &mut Transformer, config: LoraConfig, base_model: &str, seed: u64) -> Adapter {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut modules = BTreeMap::new();
        let device = model.device;
        for (name, lin) in model.linears_mut() {
            if !config.targets(&name) {
                continue;
            }
            let (out, inp) = (lin.weight.size()[0], lin.weight.size()[1]);
            // kaiming_uniform_(a=sqrt(5)) on [r, in]: bound = 1/sqrt(in).
            let bound = 1.0 / (inp as f64).sqrt();
            let a: Vec<f32> = (0..config.r * inp)
                .map(|_| rng.random_range(-bound..bound) as f32)
                .collect();
            let a = Tensor::from_slice(&a).view([config.r, inp]).to_device(device);
            let b = Tensor::zeros([out, config.r], (Kind::Float, device));
            modules.insert(name, (a, b));
        }
        Adapter {
            config,
            base_model: base_model.to_string(),
            modules,
        }
    }

    pub fn load(dir: &Path, device: Device) -> Result<Adapter, AdapterError> {
        let path = dir.join(adapter::CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| AdapterError::Io {
            path: path.clone(),
            source,
        })?;
        let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| AdapterError::Config {
            path: path.clone(),
            what: e.to_string(),
        })?;
        let bad = |what: &str| AdapterError::Config {
            path: path.clone(),
            what: what.to_string(),
        };
        if raw.get("peft_type").and_then(|v| v.as_str()) != Some("LORA") {
            return Err(bad("not a LoRA adapter (peft_type must be LORA)"));
        }
        for (flag, what) in [
            ("use_dora", "DoRA"),
            ("use_rslora", "rsLoRA"),
            ("fan_in_fan_out", "fan_in_fan_out"),
            ("lora_bias", "LoRA-bias"),
        ] {
            if raw.get(flag).and_then(|v| v.as_bool()) == Some(true) {
                return Err(bad(&format!("{what} adapters are not supported")));
            }
        }
        for pattern in ["rank_pattern", "alpha_pattern"] {
            if raw
                .get(pattern)
                .and_then(|v| v.as_object())
                .is_some_and(|m| !m.is_empty())
            {
                return Err(bad(&format!("per-module `{pattern}` is not supported")));
            }
        }
        let targets = match raw.get("target_modules") {
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|v| v.as_str().map(String::from)).collect()
            }
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => default_targets(),
        };
        let config = LoraConfig {
            r: raw
                .get("r")
                .and_then(|v| v.as_i64())
                .ok_or_else(|| bad("missing `r`"))?,
            alpha: raw
                .get("lora_alpha")
                .and_then(|v| v.as_f64())
                .ok_or_else(|| bad("missing `lora_alpha`"))?,
            dropout: raw.get("lora_dropout").and_then(|v| v.as_f64()).unwrap_or(0.0),
            target_modules: targets,
        };
        let weights = Weights::open(dir)?;
        let mut modules = BTreeMap::new();
        for (name, t) in weights.all(device)? {
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let (module, which) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
                (m, 0)
            } else if let Some(m) = rest.strip_suffix(".lora_B.weight") {
                (m, 1)
            } else {
                continue;
            };
            let entry = modules
                .entry(module.to_string())
                .or_insert_with(|| (Tensor::new(), Tensor::new()));
            let t = t.to_kind(Kind::Float);
            if which == 0 {
                entry.0 = t;
            } else {
                entry.1 = t;
            }
        }
        let base_model = raw
            .get("base_model_name_or_path")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        Ok(Adapter {
            config,
            base_model,
            modules,
        })
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` as PEFT does.
    pub fn save(&self, dir: &Path) -> Result<(), AdapterError> {
        std::fs::create_dir_all(dir).map_err(|source| AdapterError::Io {
            path: dir.into(),
            source,
        })?;
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": self.base_model,
            "r": self.config.r,
            "lora_alpha": self.config.alpha,
            "lora_dropout": self.config.dropout,
            "target_modules": self.config.target_modules,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "use_rslora": false,
            "use_dora": false,
            "modules_to_save": null,
            "layers_to_transform": null,
            "rank_pattern": {},
            "alpha_pattern": {},
        });
        let path = dir.join(adapter::CONFIG_FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json"))
            .map_err(|source| AdapterError::Io { path, source })?;
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (module, (a, b)) in &self.modules {
            tensors.push((
                format!("{PREFIX}{module}.lora_A.weight"),
                a.to_device(Device::Cpu).contiguous(),
            ));
            tensors.push((
                format!("{PREFIX}{module}.lora_B.weight"),
                b.to_device(Device::Cpu).contiguous(),
            ));
        }
        Tensor::write_safetensors(&tensors, dir.join(adapter::WEIGHTS_FILE))?;
        Ok(())
    }

    /// Joins the adapter to `model`, merged into the weights or as separate factors.
    pub fn attach(&self, model: &mut Transformer, how: Attach) -> Result<(), AdapterError> {
        let _guard = tch::no_grad_guard();
        let scaling = self.config.scaling();
        let kind = model.kind;
        let training = model.lora_training();
        let mut linears: BTreeMap<String, _> = model.linears_mut().into_iter().collect();
        for (module, (a, b)) in &self.modules {
            let lin = linears
                .get_mut(module)
                .ok_or_else(|| AdapterError::UnknownModule { module: module.clone() })?;
            let (out, inp) = (lin.weight.size()[0], lin.weight.size()[1]);
            let r = self.config.r;
            for (which, t, want) in [("A", a, vec![r, inp]), ("B", b, vec![out, r])] {
                if t.size() != want {
                    return Err(AdapterError::Shape {
                        module: module.clone(),
                        which,
                        got: t.size(),
                        want,
                    });
                }
            }
            match how {
                Attach::Merged => {
                    let delta = b.matmul(a) * scaling;
                    let merged = (lin.weight.to_kind(Kind::Float) + delta.to_device(lin.weight.device())).to_kind(kind);
                    lin.weight = merged;
                }
                Attach::Unmerged => {
                    lin.lora = Some(LoraWeights {
                        a: a.to_device(lin.weight.device()).to_kind(kind),
                        b: b.to_device(lin.weight.device()).to_kind(kind),
                        scaling,
                        dropout: self.config.dropout,
                        train: training.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}
