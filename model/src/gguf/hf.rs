//! A llama GGUF as a Hugging Face model directory: tensors renamed and dequantised to f32, the
//! q/k rows put back from llama.cpp's interleaved-RoPE order into transformers' half-split
//! order, `config.json` from the metadata, and the byte-level BPE tokenizer rebuilt from the
//! vocabulary and merges.

use std::path::Path;

use serde_json::{json, Value as Json};
use tch::Tensor;

use super::{Gguf, GgufError, Value};

fn write(out: &Path, name: &str, value: &Json) -> Result<(), GgufError> {
    let path = out.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).expect("serialisable"))
        .map_err(|source| GgufError::Io { path, source })
}

fn bad(g: &Gguf, key: &str, what: &str) -> GgufError {
    GgufError::Metadata {
        path: g.path.clone(),
        key: key.to_string(),
        what: what.to_string(),
    }
}

/// The HF name of a GGUF tensor, and how many heads to un-permute its rows by (q and k).
fn hf_name(name: &str, heads: i64, kv_heads: i64) -> Option<(String, Option<i64>)> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some((f.to_string(), None));
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (hf, permute) = match part {
        "attn_norm.weight" => ("input_layernorm.weight", None),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", None),
        "attn_q.weight" => ("self_attn.q_proj.weight", Some(heads)),
        "attn_k.weight" => ("self_attn.k_proj.weight", Some(kv_heads)),
        "attn_v.weight" => ("self_attn.v_proj.weight", None),
        "attn_output.weight" => ("self_attn.o_proj.weight", None),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", None),
        "ffn_up.weight" => ("mlp.up_proj.weight", None),
        "ffn_down.weight" => ("mlp.down_proj.weight", None),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{hf}"), permute))
}

/// llama.cpp stores each head's rotary pairs interleaved; transformers rotates halves. `None`
/// when the weight's rows do not split into `heads` heads of rotary pairs.
fn unpermute(w: &Tensor, heads: i64) -> Option<Tensor> {
    let size = w.size();
    let [out, inp] = size[..] else { return None };
    (heads > 0 && out % (2 * heads) == 0).then(|| {
        w.reshape([heads, out / heads / 2, 2, inp])
            .transpose(1, 2)
            .reshape([out, inp])
    })
}

/// Writes `g` (a llama GGUF) to `out` as an HF model directory in f32.
pub fn write_hf(g: &Gguf, out: &Path) -> Result<(), GgufError> {
    let arch = g.require("general.architecture")?.as_str().unwrap_or_default();
    if arch != "llama" {
        return Err(bad(
            g,
            "general.architecture",
            &format!("is `{arch}`; secvec imports llama GGUFs"),
        ));
    }
    let uint = |key: &str| -> Result<i64, GgufError> {
        g.require(key)?
            .as_u64()
            .map(|v| v as i64)
            .ok_or_else(|| bad(g, key, "is not a whole number"))
    };
    let float = |key: &str, default: f64| g.get(key).and_then(Value::as_f64).unwrap_or(default);
    let (layers, hidden, ffn, heads) = (
        uint("llama.block_count")?,
        uint("llama.embedding_length")?,
        uint("llama.feed_forward_length")?,
        uint("llama.attention.head_count")?,
    );
    let kv_heads = g
        .get("llama.attention.head_count_kv")
        .and_then(Value::as_u64)
        .map_or(heads, |v| v as i64);
    let tokens: Vec<&str> = g
        .require("tokenizer.ggml.tokens")?
        .as_array()
        .ok_or_else(|| bad(g, "tokenizer.ggml.tokens", "is not an array"))?
        .iter()
        .map(|t| t.as_str().unwrap_or_default())
        .collect();
    let mut tensors = Vec::new();
    for name in g.tensors.keys() {
        // Rotary frequencies, when stored, follow from the metadata.
        if name == "rope_freqs.weight" {
            continue;
        }
        let (hf, permute) = hf_name(name, heads, kv_heads).ok_or_else(|| GgufError::Format {
            path: g.path.clone(),
            what: format!("tensor `{name}` is not one of a llama model's"),
        })?;
        let t = g.tensor(name)?;
        let t = match permute {
            None => t,
            Some(h) => unpermute(&t, h).ok_or_else(|| GgufError::Format {
                path: g.path.clone(),
                what: format!("tensor `{name}` of shape {:?} does not split into {h} heads", t.size()),
            })?,
        };
        tensors.push((hf, t));
    }
    let tied = !g.tensors.contains_key("output.weight");
    let weights = out.join("model.safetensors");
    Tensor::write_safetensors(&tensors, &weights).map_err(|e| GgufError::Format {
        path: weights,
        what: e.to_string(),
    })?;
    let token_id = |key: &str| g.get(key).and_then(Value::as_u64);
    let (bos, eos) = (
        token_id("tokenizer.ggml.bos_token_id"),
        token_id("tokenizer.ggml.eos_token_id"),
    );
    write(
        out,
        "config.json",
        &json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": tokens.len(),
            "hidden_size": hidden,
            "intermediate_size": ffn,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "hidden_act": "silu",
            "rms_norm_eps": float("llama.attention.layer_norm_rms_epsilon", 1e-5),
            "rope_theta": float("llama.rope.freq_base", 10000.0),
            "max_position_embeddings": g.get("llama.context_length").and_then(Value::as_u64).unwrap_or(2048),
            "tie_word_embeddings": tied,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "torch_dtype": "float32",
        }),
    )?;
    write(
        out,
        "generation_config.json",
        &json!({"bos_token_id": bos, "eos_token_id": eos}),
    )?;
    write(out, "tokenizer.json", &tokenizer(g, &tokens)?)?;
    let name_of = |id: Option<u64>| id.and_then(|i| tokens.get(i as usize)).copied();
    write(
        out,
        "tokenizer_config.json",
        &json!({
            "bos_token": name_of(bos),
            "eos_token": name_of(eos),
            "add_bos_token": g.get("tokenizer.ggml.add_bos_token").is_some_and(|v| *v == Value::Bool(true)),
            "chat_template": g.get("tokenizer.chat_template").and_then(Value::as_str),
            "tokenizer_class": "PreTrainedTokenizerFast",
        }),
    )?;
    Ok(())
}

/// The `tokenizers` JSON of a GGUF's byte-level BPE vocabulary (`tokenizer.ggml.model = gpt2`).
fn tokenizer(g: &Gguf, tokens: &[&str]) -> Result<Json, GgufError> {
    let model = g.require("tokenizer.ggml.model")?.as_str().unwrap_or_default();
    if model != "gpt2" {
        return Err(bad(
            g,
            "tokenizer.ggml.model",
            &format!("is `{model}`; secvec rebuilds byte-level BPE (`gpt2`) tokenizers"),
        ));
    }
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre = g.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
    let pre_tokenizer = match pre {
        // SmolLM splits every digit on its own before the GPT-2 split.
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]}),
        "default" | "gpt2" => byte_level.clone(),
        other => {
            return Err(bad(
                g,
                "tokenizer.ggml.pre",
                &format!("is `{other}`; secvec rebuilds the `smollm`, `gpt2` and `default` pre-tokenizers"),
            ))
        }
    };
    let merges: Vec<&str> = g
        .require("tokenizer.ggml.merges")?
        .as_array()
        .ok_or_else(|| bad(g, "tokenizer.ggml.merges", "is not an array"))?
        .iter()
        .map(|m| m.as_str().unwrap_or_default())
        .collect();
    let types: Vec<u64> = g
        .get("tokenizer.ggml.token_type")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
        .unwrap_or_default();
    // Control (3) and user-defined (4) tokens are matched whole, before the BPE.
    let added: Vec<Json> = types
        .iter()
        .zip(tokens)
        .enumerate()
        .filter(|(_, (&t, _))| t == 3 || t == 4)
        .map(|(id, (&t, token))| {
            json!({"id": id, "content": token, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": t == 3})
        })
        .collect();
    let vocab: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.to_string(), json!(id)))
        .collect();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    }))
}
