//! The decoder-only transformer shared by Llama, Qwen2 and StarCoder2: RoPE (with scaling),
//! grouped-query attention with a KV cache, sliding windows, RMSNorm or LayerNorm, gated or
//! plain MLPs, optional biases and tied embeddings.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use super::config::{Activation, ModelConfig, Norm, RopeScaling};
use super::weights::{Weights, WeightsError};

mod pass;
mod ragged;

pub use pass::{Hidden, PassOptions};
pub use ragged::MIN_ROWS;

/// A linear projection `y = x Wᵀ + b`, with an optional unmerged LoRA update.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub lora: Option<LoraWeights>,
}

/// `ΔW = scaling · B A`, applied as `scaling · B (A dropout(x))` while unmerged.
pub struct LoraWeights {
    /// `[r, in]`
    pub a: Tensor,
    /// `[out, r]`
    pub b: Tensor,
    pub scaling: f64,
    pub dropout: f64,
    /// Dropout applies only while training: the model's one switch, shared by every adapted
    /// projection (see [`Transformer::lora_training`]).
    pub train: Arc<AtomicBool>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.linear(&self.weight, self.bias.as_ref());
        match &self.lora {
            None => y,
            Some(l) => {
                let h = if l.dropout > 0.0 && l.train.load(Ordering::Relaxed) {
                    x.dropout(l.dropout, true)
                } else {
                    x.shallow_clone()
                };
                // Factors trained in f32 beside a bf16 base (as PEFT keeps them) take their input
                // in f32. Scaled at rank r, not at the output width: one small elementwise op.
                let h = h.to_kind(l.a.kind());
                let delta = (h.linear(&l.a, None::<&Tensor>) * l.scaling).linear(&l.b, None::<&Tensor>);
                y + delta.to_kind(x.kind())
            }
        }
    }
}

struct NormLayer {
    kind: Norm,
    weight: Tensor,
    bias: Option<Tensor>,
}

impl NormLayer {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self.kind {
            // As transformers does: statistics in f32, then back to the input's dtype. (libtorch's
            // fused rms_norm measured slower here on CPU.)
            Norm::Rms { eps } => {
                let kind = x.kind();
                let h = x.to_kind(Kind::Float);
                let var = h.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
                (h * (var + eps).rsqrt()).to_kind(kind) * &self.weight
            }
            Norm::Layer { eps } => {
                let n = self.weight.size()[0];
                x.layer_norm([n], Some(&self.weight), self.bias.as_ref(), eps, false)
            }
        }
    }
}

pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
}

pub enum Mlp {
    Gated { gate: Linear, up: Linear, down: Linear },
    Plain { fc: Linear, proj: Linear },
}

pub struct Layer {
    input_norm: NormLayer,
    post_norm: NormLayer,
    pub attn: Attention,
    pub mlp: Mlp,
    window: Option<i64>,
}

/// Which keys each query of an attention may see.
enum Attend<'a> {
    All,
    /// Itself and the keys before it (libtorch's fused causal kernels, no mask tensor).
    Causal,
    /// `[.., q, k]`, true where the query may see the key.
    Mask(&'a Tensor),
}

/// Keys and values of every layer for the positions seen so far, preallocated to a capacity.
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: i64,
}

impl KvCache {
    pub fn new(config: &ModelConfig, batch: i64, capacity: i64, kind: Kind, device: Device) -> KvCache {
        let shape = [batch, config.num_kv_heads, capacity, config.head_dim];
        let make = || {
            (0..config.num_layers)
                .map(|_| Tensor::zeros(shape, (kind, device)))
                .collect()
        };
        KvCache {
            k: make(),
            v: make(),
            len: 0,
        }
    }

    pub fn capacity(&self) -> i64 {
        self.k.first().map(|t| t.size()[2]).unwrap_or(0)
    }

    /// A batch-`n` cache holding `n` copies of this batch-1 cache: a shared prompt is
    /// prefilled once and every sample continues from it.
    pub fn repeat(&self, n: i64) -> KvCache {
        let rep = |ts: &Vec<Tensor>| ts.iter().map(|t| t.repeat([n, 1, 1, 1])).collect();
        KvCache {
            k: rep(&self.k),
            v: rep(&self.v),
            len: self.len,
        }
    }

    /// Keeps only the given batch rows (samples still generating).
    pub fn select_rows(&self, rows: &Tensor) -> KvCache {
        let pick = |ts: &Vec<Tensor>| ts.iter().map(|t| t.index_select(0, rows)).collect();
        KvCache {
            k: pick(&self.k),
            v: pick(&self.v),
            len: self.len,
        }
    }

    fn store(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let t = k.size()[2];
        self.k[layer].narrow(2, self.len, t).copy_(k);
        self.v[layer].narrow(2, self.len, t).copy_(v);
        (
            self.k[layer].narrow(2, 0, self.len + t),
            self.v[layer].narrow(2, 0, self.len + t),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{needed} positions exceed the KV cache capacity {capacity}")]
    CacheFull { needed: i64, capacity: i64 },
}

pub struct Transformer {
    pub config: ModelConfig,
    pub device: Device,
    pub kind: Kind,
    embed: Tensor,
    pub layers: Vec<Layer>,
    norm: NormLayer,
    lm_head: Option<Tensor>,
    inv_freq: Tensor,
    /// Whether LoRA dropout is on: one switch for every attached adapter, so training can turn
    /// it off to measure the model between steps without exclusive access.
    lora_training: Arc<AtomicBool>,
}

fn inv_freq(config: &ModelConfig, device: Device) -> Tensor {
    let d = config.head_dim;
    let base: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f64 / d as f64))
        .collect();
    let scaled: Vec<f64> = match config.rope_scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.into_iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position,
        } => {
            let low_wavelen = original_max_position / low_freq_factor;
            let high_wavelen = original_max_position / high_freq_factor;
            base.into_iter()
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth =
                            (original_max_position / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    };
    // transformers computes frequencies in f32; so do we, to match its logits.
    Tensor::from_slice(&scaled.iter().map(|&f| f as f32).collect::<Vec<f32>>()).to_device(device)
}

fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size()[x.dim() - 1] / 2;
    Tensor::cat(&[-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1)
}

impl Transformer {
    /// Loads an HF model directory (config.json + safetensors) onto `device` in `kind`.
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Transformer, ModelError> {
        let config = ModelConfig::from_dir(dir)?;
        let weights = Weights::open(dir)?;
        let _guard = tch::no_grad_guard();
        Self::from_weights(config, &weights, device, kind)
    }

    pub fn from_weights(
        config: ModelConfig,
        w: &Weights,
        device: Device,
        kind: Kind,
    ) -> Result<Transformer, ModelError> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let (qd, kvd) = (
            config.num_heads * config.head_dim,
            config.num_kv_heads * config.head_dim,
        );
        let get = |name: &str, shape: &[i64]| w.get(name, shape, kind, device);
        let linear = |prefix: &str, out: i64, inp: i64, bias: bool| -> Result<Linear, WeightsError> {
            Ok(Linear {
                weight: get(&format!("{prefix}.weight"), &[out, inp])?,
                bias: if bias {
                    Some(get(&format!("{prefix}.bias"), &[out])?)
                } else {
                    None
                },
                lora: None,
            })
        };
        let norm = |prefix: &str| -> Result<NormLayer, WeightsError> {
            Ok(NormLayer {
                kind: config.norm,
                weight: get(&format!("{prefix}.weight"), &[h])?,
                bias: match config.norm {
                    Norm::Layer { .. } => Some(get(&format!("{prefix}.bias"), &[h])?),
                    Norm::Rms { .. } => None,
                },
            })
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let p = format!("model.layers.{l}");
            let attn = Attention {
                q: linear(&format!("{p}.self_attn.q_proj"), qd, h, config.qkv_bias)?,
                k: linear(&format!("{p}.self_attn.k_proj"), kvd, h, config.qkv_bias)?,
                v: linear(&format!("{p}.self_attn.v_proj"), kvd, h, config.qkv_bias)?,
                o: linear(&format!("{p}.self_attn.o_proj"), h, qd, config.o_bias)?,
            };
            let mlp = if config.gated_mlp {
                Mlp::Gated {
                    gate: linear(&format!("{p}.mlp.gate_proj"), i, h, config.mlp_bias)?,
                    up: linear(&format!("{p}.mlp.up_proj"), i, h, config.mlp_bias)?,
                    down: linear(&format!("{p}.mlp.down_proj"), h, i, config.mlp_bias)?,
                }
            } else {
                Mlp::Plain {
                    fc: linear(&format!("{p}.mlp.c_fc"), i, h, config.mlp_bias)?,
                    proj: linear(&format!("{p}.mlp.c_proj"), h, i, config.mlp_bias)?,
                }
            };
            layers.push(Layer {
                input_norm: norm(&format!("{p}.input_layernorm"))?,
                post_norm: norm(&format!("{p}.post_attention_layernorm"))?,
                attn,
                mlp,
                window: config.sliding_window[l],
            });
        }
        let embed = get("model.embed_tokens.weight", &[config.vocab_size, h])?;
        let lm_head = if config.tie_word_embeddings && !w.contains("lm_head.weight") {
            None
        } else {
            Some(get("lm_head.weight", &[config.vocab_size, h])?)
        };
        Ok(Transformer {
            norm: norm("model.norm")?,
            inv_freq: inv_freq(&config, device),
            config,
            device,
            kind,
            embed,
            layers,
            lm_head,
            lora_training: Arc::default(),
        })
    }

    /// Every projection a LoRA adapter can target, by its module path in HF naming
    /// (`model.layers.3.self_attn.q_proj`).
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (l, layer) in self.layers.iter_mut().enumerate() {
            let p = format!("model.layers.{l}");
            let a = &mut layer.attn;
            for (name, lin) in [
                ("q_proj", &mut a.q),
                ("k_proj", &mut a.k),
                ("v_proj", &mut a.v),
                ("o_proj", &mut a.o),
            ] {
                out.push((format!("{p}.self_attn.{name}"), lin));
            }
            match &mut layer.mlp {
                Mlp::Gated { gate, up, down } => {
                    for (name, lin) in [("gate_proj", gate), ("up_proj", up), ("down_proj", down)] {
                        out.push((format!("{p}.mlp.{name}"), lin));
                    }
                }
                Mlp::Plain { fc, proj } => {
                    out.push((format!("{p}.mlp.c_fc"), fc));
                    out.push((format!("{p}.mlp.c_proj"), proj));
                }
            }
        }
        out
    }

    /// The dropout switch a LoRA update attached to this model shares.
    pub fn lora_training(&self) -> Arc<AtomicBool> {
        self.lora_training.clone()
    }

    pub fn new_cache(&self, batch: i64, capacity: i64) -> KvCache {
        KvCache::new(&self.config, batch, capacity, self.kind, self.device)
    }

    /// What one token of one sequence takes in a KV cache: keys and values of every layer.
    pub fn kv_bytes_per_token(&self) -> u64 {
        let c = &self.config;
        c.num_layers as u64
            * 2
            * c.num_kv_heads.max(0) as u64
            * c.head_dim.max(0) as u64
            * self.kind.elt_size_in_bytes() as u64
    }

    /// Logits `[batch, t, vocab]` (f32) for `ids` `[batch, t]` following the cached positions.
    // `x += …` would add in place, which autograd cannot differentiate through when training.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor, ModelError> {
        // Callers build ids on the host; the embedding lookup needs them where the weights are.
        let ids = &ids.to_device(self.device);
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let offset = cache.len;
        if offset + t > cache.capacity() {
            return Err(ModelError::CacheFull {
                needed: offset + t,
                capacity: cache.capacity(),
            });
        }
        let positions = Tensor::arange_start(offset, offset + t, (Kind::Float, self.device));
        let freqs = positions.outer(&self.inv_freq);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        let (cos, sin) = (emb.cos().to_kind(self.kind), emb.sin().to_kind(self.kind));
        let mut x = Tensor::embedding(&self.embed, ids, -1, false, false);
        for (l, layer) in self.layers.iter().enumerate() {
            let h = layer.input_norm.forward(&x);
            x = x + self.attention(layer, l, &h, &cos, &sin, cache, b, t);
            let h = layer.post_norm.forward(&x);
            x = x + self.mlp(&layer.mlp, &h);
        }
        cache.len += t;
        let x = self.norm.forward(&x);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        Ok(x.linear(head, None::<&Tensor>).to_kind(Kind::Float))
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: &Layer,
        l: usize,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cache: &mut KvCache,
        b: i64,
        t: i64,
    ) -> Tensor {
        let (q, k, v) = self.qkv(layer, x, cos, sin, b, t);
        let offset = cache.len;
        let (k, v) = cache.store(l, &k, &v);
        let mask = self.cached_mask(layer, offset, t);
        let mask = match &mask {
            Some(m) => Attend::Mask(m),
            None => Attend::All,
        };
        self.attend(layer, &q, &k, &v, mask, b, t)
    }

    /// Which cached keys the `t` queries after `offset` cached positions may see, or `None`
    /// when each sees them all (one query, no window cutting any off).
    fn cached_mask(&self, layer: &Layer, offset: i64, t: i64) -> Option<Tensor> {
        let total = offset + t;
        (t > 1 || layer.window.is_some_and(|w| total > w)).then(|| {
            let qpos = Tensor::arange_start(offset, total, (Kind::Int64, self.device)).unsqueeze(1);
            let kpos = Tensor::arange(total, (Kind::Int64, self.device)).unsqueeze(0);
            let causal = kpos.le_tensor(&qpos);
            match layer.window {
                Some(w) => causal.logical_and(&kpos.gt_tensor(&(&qpos - w))),
                None => causal,
            }
        })
    }

    /// Queries, keys and values `[b, heads, t, d]` with rotary embeddings applied.
    fn qkv(&self, layer: &Layer, x: &Tensor, cos: &Tensor, sin: &Tensor, b: i64, t: i64) -> (Tensor, Tensor, Tensor) {
        let c = &self.config;
        let (nh, nkv, d) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let a = &layer.attn;
        let q = a.q.forward(x).view([b, t, nh, d]).transpose(1, 2);
        let k = a.k.forward(x).view([b, t, nkv, d]).transpose(1, 2);
        let v = a.v.forward(x).view([b, t, nkv, d]).transpose(1, 2);
        let q = &q * cos + rotate_half(&q) * sin;
        let k = &k * cos + rotate_half(&k) * sin;
        (q, k, v)
    }

    /// Attention output `[b, t, hidden]`; `mask` is true where a query may see a key.
    #[allow(clippy::too_many_arguments)]
    fn attend(&self, layer: &Layer, q: &Tensor, k: &Tensor, v: &Tensor, mask: Attend, b: i64, t: i64) -> Tensor {
        let c = &self.config;
        let out = self.heads(q, k, v, mask);
        layer
            .attn
            .o
            .forward(&out.transpose(1, 2).reshape([b, t, c.num_heads * c.head_dim]))
    }

    /// Each head's attention output `[b, heads, t, d]`, before the output projection.
    fn heads(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: Attend) -> Tensor {
        let (mask, causal) = match mask {
            Attend::All => (None, false),
            Attend::Causal => (None, true),
            Attend::Mask(m) => (Some(m), false),
        };
        // Grouped-query attention without copying keys and values out to every query head.
        let grouped = self.config.num_heads != self.config.num_kv_heads;
        Tensor::scaled_dot_product_attention(q, k, v, mask, 0.0, causal, None, grouped)
    }

    /// The output projection `[vocab, hidden]` (the embeddings when tied).
    pub fn output_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    fn mlp(&self, mlp: &Mlp, x: &Tensor) -> Tensor {
        let act = |z: Tensor| match self.config.activation {
            Activation::Silu => z.silu(),
            Activation::GeluTanh => z.gelu("tanh"),
            Activation::Gelu => z.gelu("none"),
        };
        match mlp {
            Mlp::Gated { gate, up, down } => down.forward(&(act(gate.forward(x)) * up.forward(x))),
            Mlp::Plain { fc, proj } => proj.forward(&act(fc.forward(x))),
        }
    }
}
