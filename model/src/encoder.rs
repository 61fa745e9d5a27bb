//! Sentence embeddings from a BERT-family encoder in a sentence-transformers folder
//! (`modules.json`: the transformer, a `Pooling` module, optionally `Normalize`), as Rescue's
//! dense retrieval uses them: token embeddings pooled (mean, CLS, max or mean·√len) over the
//! attention mask, then L2-normalised.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tch::{Device, Kind, Tensor};
use tokenizers::{Tokenizer, TruncationParams};

use crate::weights::{Weights, WeightsError};

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {what}")]
    Format { path: PathBuf, what: String },
    #[error("{path}: `{field}` is {value}; secvec's encoder supports {supported}")]
    Unsupported {
        path: PathBuf,
        field: &'static str,
        value: String,
        supported: &'static str,
    },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// How token embeddings become one sentence embedding (sentence-transformers' `Pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Cls,
    Mean,
    Max,
    MeanSqrtLen,
}

#[derive(Deserialize)]
struct Module {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceConfig {
    max_seq_length: Option<i64>,
}

#[derive(Deserialize)]
struct BertConfig {
    model_type: String,
    hidden_size: i64,
    num_hidden_layers: usize,
    num_attention_heads: i64,
    intermediate_size: i64,
    vocab_size: i64,
    max_position_embeddings: i64,
    #[serde(default = "one")]
    type_vocab_size: i64,
    #[serde(default = "bert_eps")]
    layer_norm_eps: f64,
    #[serde(default = "gelu")]
    hidden_act: String,
    #[serde(default = "absolute")]
    position_embedding_type: String,
}

fn one() -> i64 {
    1
}
fn bert_eps() -> f64 {
    1e-12
}
fn gelu() -> String {
    "gelu".into()
}
fn absolute() -> String {
    "absolute".into()
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, EncoderError> {
    let text = std::fs::read_to_string(path).map_err(|source| EncoderError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| EncoderError::Format {
        path: path.to_path_buf(),
        what: e.to_string(),
    })
}

struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn load(w: &Weights, name: &str, out: i64, inp: i64, device: Device) -> Result<Linear, WeightsError> {
        Ok(Linear {
            weight: w.get(&format!("{name}.weight"), &[out, inp], Kind::Float, device)?,
            bias: w.get(&format!("{name}.bias"), &[out], Kind::Float, device)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(w: &Weights, name: &str, n: i64, eps: f64, device: Device) -> Result<LayerNorm, WeightsError> {
        Ok(LayerNorm {
            weight: w.get(&format!("{name}.weight"), &[n], Kind::Float, device)?,
            bias: w.get(&format!("{name}.bias"), &[n], Kind::Float, device)?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let n = self.weight.size()[0];
        x.layer_norm([n], Some(&self.weight), Some(&self.bias), self.eps, false)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// A BERT encoder with its tokenizer and pooling, in f32.
pub struct Encoder {
    tokenizer: Tokenizer,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: i64,
    pooling: Pooling,
    normalize: bool,
    device: Device,
}

impl Encoder {
    /// Loads a sentence-transformers folder: `modules.json`, the transformer's `config.json`,
    /// weights and `tokenizer.json`, the pooling module's config and `max_seq_length`.
    pub fn load(dir: &Path, device: Device) -> Result<Encoder, EncoderError> {
        let modules_path = dir.join("modules.json");
        let modules: Vec<Module> = read_json(&modules_path)?;
        let find = |suffix: &str| modules.iter().find(|m| m.kind.ends_with(suffix));
        let transformer = find("models.Transformer").ok_or_else(|| EncoderError::Format {
            path: modules_path.clone(),
            what: "no sentence_transformers.models.Transformer module".into(),
        })?;
        let pooling_module = find("models.Pooling").ok_or_else(|| EncoderError::Format {
            path: modules_path.clone(),
            what: "no sentence_transformers.models.Pooling module".into(),
        })?;
        let normalize = find("models.Normalize").is_some();
        let root = dir.join(&transformer.path);
        let pooling_path = dir.join(&pooling_module.path).join("config.json");
        let p: PoolingConfig = read_json(&pooling_path)?;
        let pooling = match (
            p.pooling_mode_cls_token,
            p.pooling_mode_mean_tokens,
            p.pooling_mode_max_tokens,
            p.pooling_mode_mean_sqrt_len_tokens,
        ) {
            (true, false, false, false) => Pooling::Cls,
            (false, true, false, false) => Pooling::Mean,
            (false, false, true, false) => Pooling::Max,
            (false, false, false, true) => Pooling::MeanSqrtLen,
            _ => {
                return Err(EncoderError::Unsupported {
                    path: pooling_path,
                    field: "pooling_mode_*",
                    value: "not exactly one mode".into(),
                    supported: "exactly one of cls, mean, max and mean_sqrt_len",
                })
            }
        };
        let config_path = root.join("config.json");
        let c: BertConfig = read_json(&config_path)?;
        let unsupported = |field, value: &str, supported| EncoderError::Unsupported {
            path: config_path.clone(),
            field,
            value: format!("`{value}`"),
            supported,
        };
        if c.model_type != "bert" {
            return Err(unsupported("model_type", &c.model_type, "`bert`"));
        }
        if c.hidden_act != "gelu" {
            return Err(unsupported("hidden_act", &c.hidden_act, "`gelu`"));
        }
        if c.position_embedding_type != "absolute" {
            return Err(unsupported(
                "position_embedding_type",
                &c.position_embedding_type,
                "`absolute`",
            ));
        }
        let sentence_path = root.join("sentence_bert_config.json");
        let max_len = if sentence_path.is_file() {
            read_json::<SentenceConfig>(&sentence_path)?.max_seq_length
        } else {
            None
        }
        .unwrap_or(c.max_position_embeddings)
        .min(c.max_position_embeddings);
        let tokenizer_path = root.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| EncoderError::Format {
            path: tokenizer_path.clone(),
            what: e.to_string(),
        })?;
        // sentence-transformers truncates to max_seq_length and pads per batch, whatever the
        // tokenizer file says.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len as usize,
                ..TruncationParams::default()
            }))
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let w = Weights::open(&root)?;
        // Checkpoints saved from BertForX keep the `bert.` prefix.
        let prefix = if w.contains("embeddings.word_embeddings.weight") {
            ""
        } else {
            "bert."
        };
        let (h, eps) = (c.hidden_size, c.layer_norm_eps);
        let get = |name: &str, shape: &[i64]| w.get(&format!("{prefix}{name}"), shape, Kind::Float, device);
        let linear = |name: &str, out, inp| Linear::load(&w, &format!("{prefix}{name}"), out, inp, device);
        let norm = |name: &str| LayerNorm::load(&w, &format!("{prefix}{name}"), h, eps, device);
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            layers.push(Layer {
                query: linear(&format!("{p}.attention.self.query"), h, h)?,
                key: linear(&format!("{p}.attention.self.key"), h, h)?,
                value: linear(&format!("{p}.attention.self.value"), h, h)?,
                attention_out: linear(&format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: linear(&format!("{p}.intermediate.dense"), c.intermediate_size, h)?,
                output: linear(&format!("{p}.output.dense"), h, c.intermediate_size)?,
                output_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Encoder {
            tokenizer,
            word: get("embeddings.word_embeddings.weight", &[c.vocab_size, h])?,
            position: get("embeddings.position_embeddings.weight", &[c.max_position_embeddings, h])?,
            token_type: get("embeddings.token_type_embeddings.weight", &[c.type_vocab_size, h])?,
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
            heads: c.num_attention_heads,
            pooling,
            normalize,
            device,
        })
    }

    /// The length of every embedding.
    pub fn dimension(&self) -> usize {
        self.word.size()[1] as usize
    }

    /// One embedding per text, in order, as rows of an f32 tensor on the CPU. Texts are encoded
    /// `batch` at a time, longest first, so each batch pads little.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S], batch: usize) -> Result<Tensor, EncoderError> {
        let _guard = tch::no_grad_guard();
        let mut ids = Vec::with_capacity(texts.len());
        for t in texts {
            let e = self
                .tokenizer
                .encode(t.as_ref(), true)
                .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
            ids.push(e.get_ids().iter().map(|&i| i as i64).collect::<Vec<i64>>());
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        if ids.is_empty() {
            return Ok(Tensor::zeros([0, self.dimension() as i64], (Kind::Float, Device::Cpu)));
        }
        let sorted: Vec<Tensor> = order
            .chunks(batch.max(1))
            .map(|chunk| self.forward_batch(&chunk.iter().map(|&i| ids[i].as_slice()).collect::<Vec<_>>()))
            .collect();
        // Row r of the sorted embeddings is text order[r]; put each back at its text's place.
        let mut place = vec![0i64; order.len()];
        for (r, &i) in order.iter().enumerate() {
            place[i] = r as i64;
        }
        let place = Tensor::from_slice(&place).to_device(self.device);
        Ok(Tensor::cat(&sorted, 0).index_select(0, &place).to_device(Device::Cpu))
    }

    fn forward_batch(&self, ids: &[&[i64]]) -> Tensor {
        let (b, len) = (ids.len() as i64, ids.iter().map(|x| x.len()).max().unwrap_or(0) as i64);
        let mut flat = vec![0i64; (b * len) as usize];
        let mut mask = vec![0f32; (b * len) as usize];
        for (r, row) in ids.iter().enumerate() {
            let at = r * len as usize;
            flat[at..at + row.len()].copy_from_slice(row);
            mask[at..at + row.len()].fill(1.0);
        }
        let input = Tensor::from_slice(&flat).view([b, len]).to_device(self.device);
        let mask = Tensor::from_slice(&mask).view([b, len]).to_device(self.device);
        let positions = Tensor::arange(len, (Kind::Int64, self.device));
        let x = self.word.index_select(0, &input.view([-1])).view([b, len, -1])
            + self.position.index_select(0, &positions).unsqueeze(0)
            + self.token_type.get(0);
        let mut x = self.embedding_norm.forward(&x);
        // Padding is masked with the dtype's lowest value, as transformers does.
        let bias = ((mask.ones_like() - &mask) * f64::from(f32::MIN)).view([b, 1, 1, len]);
        let h = x.size()[2];
        let d = h / self.heads;
        for layer in &self.layers {
            let split = |t: Tensor| t.view([b, len, self.heads, d]).transpose(1, 2);
            let (q, k, v) = (
                split(layer.query.forward(&x)),
                split(layer.key.forward(&x)),
                split(layer.value.forward(&x)),
            );
            let context = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&bias), 0.0, false, None, false)
                .transpose(1, 2)
                .contiguous()
                .view([b, len, h]);
            x = layer
                .attention_norm
                .forward(&(layer.attention_out.forward(&context) + &x));
            let inner = layer.intermediate.forward(&x).gelu("none");
            x = layer.output_norm.forward(&(layer.output.forward(&inner) + &x));
        }
        let m = mask.unsqueeze(-1);
        let pooled = match self.pooling {
            Pooling::Cls => x.select(1, 0),
            Pooling::Mean | Pooling::MeanSqrtLen => {
                let sum = (&x * &m).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
                let count = m.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).clamp_min(1e-9);
                if self.pooling == Pooling::Mean {
                    sum / count
                } else {
                    sum / count.sqrt()
                }
            }
            Pooling::Max => (&x + (m.ones_like() - &m) * -1e9).amax([1i64].as_slice(), false),
        };
        if self.normalize {
            let norm = pooled.norm_scalaropt_dim(2.0, [1i64].as_slice(), true).clamp_min(1e-12);
            pooled / norm
        } else {
            pooled
        }
    }
}
