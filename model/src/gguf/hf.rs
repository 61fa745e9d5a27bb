//! A llama or qwen2 GGUF as a Hugging Face model directory: tensors renamed and dequantised to
//! f32, a llama's q/k rows put back from llama.cpp's interleaved-RoPE order into transformers'
//! half-split order (qwen2 is stored half-split already), `config.json` from the metadata, and
//! the byte-level BPE tokenizer rebuilt from the vocabulary and merges.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value as Json};

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

/// The HF name of a GGUF tensor, and how many heads to un-permute its rows by (a llama's q and k,
/// when `interleaved` says llama.cpp stored them with interleaved rotary pairs).
fn hf_name(name: &str, heads: i64, kv_heads: i64, interleaved: bool) -> Option<(String, Option<i64>)> {
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
    let (q_heads, k_heads) = (interleaved.then_some(heads), interleaved.then_some(kv_heads));
    let (hf, permute) = match part {
        "attn_norm.weight" => ("input_layernorm.weight", None),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", None),
        "attn_q.weight" => ("self_attn.q_proj.weight", q_heads),
        "attn_k.weight" => ("self_attn.k_proj.weight", k_heads),
        "attn_v.weight" => ("self_attn.v_proj.weight", None),
        "attn_q.bias" => ("self_attn.q_proj.bias", q_heads),
        "attn_k.bias" => ("self_attn.k_proj.bias", k_heads),
        "attn_v.bias" => ("self_attn.v_proj.bias", None),
        "attn_output.weight" => ("self_attn.o_proj.weight", None),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", None),
        "ffn_up.weight" => ("mlp.up_proj.weight", None),
        "ffn_down.weight" => ("mlp.down_proj.weight", None),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{hf}"), permute))
}

/// llama.cpp stores each head's rotary pairs interleaved; transformers rotates halves: within
/// each head, row `2i + j` becomes row `j * half + i`. `shape` is `[out, in]` (or `[out]`, a
/// bias), its rows split into `heads` heads of rotary pairs (checked by [`splits_into_heads`]).
fn unpermute(w: &[f32], shape: &[usize], heads: usize) -> Vec<f32> {
    let (out, inp) = (shape[0], shape.get(1).copied().unwrap_or(1));
    let half = out / heads / 2;
    let mut rows = vec![0f32; w.len()];
    for head in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let from = (head * 2 * half + 2 * i + j) * inp;
                let to = (head * 2 * half + j * half + i) * inp;
                rows[to..to + inp].copy_from_slice(&w[from..from + inp]);
            }
        }
    }
    rows
}

fn splits_into_heads(shape: &[usize], heads: usize) -> bool {
    matches!(shape.len(), 1 | 2) && heads > 0 && shape[0].is_multiple_of(2 * heads)
}

/// One tensor of the output: its HF name, the GGUF tensor it comes from, the heads to
/// un-permute its rows by, and its shape in PyTorch order.
struct Planned<'a> {
    hf: String,
    gguf: &'a str,
    permute: Option<usize>,
    shape: Vec<usize>,
}

/// Writes `plan` (sorted by HF name, as safetensors' own writer orders F32 tensors) as an f32
/// safetensors file, one tensor at a time: an import holds one dequantised tensor, not the model.
fn write_weights(g: &Gguf, path: &Path, plan: &[Planned]) -> Result<(), GgufError> {
    let io = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for p in plan {
        let bytes = p.shape.iter().product::<usize>() * 4;
        header.insert(
            p.hf.clone(),
            json!({"dtype": "F32", "shape": p.shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut header = serde_json::to_vec(&header).expect("serialisable");
    // Spaces pad the header so that the data starts 8-byte aligned, as the format asks.
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    out.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    for p in plan {
        let values = g.values(p.gguf)?;
        let values = match p.permute {
            Some(heads) => unpermute(&values, &p.shape, heads),
            None => values,
        };
        for v in values {
            out.write_all(&v.to_le_bytes()).map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

/// Writes `g` (a llama or qwen2 GGUF) to `out` as an HF model directory in f32.
pub fn write_hf(g: &Gguf, out: &Path) -> Result<(), GgufError> {
    let arch = g.require("general.architecture")?.as_str().unwrap_or_default();
    let (architecture, interleaved) = match arch {
        "llama" => ("LlamaForCausalLM", true),
        "qwen2" => ("Qwen2ForCausalLM", false),
        _ => {
            return Err(bad(
                g,
                "general.architecture",
                &format!("is `{arch}`; secvec imports llama and qwen2 GGUFs"),
            ))
        }
    };
    // Hyperparameters are under the architecture's name: `qwen2.block_count`, ...
    let key = |name: &str| format!("{arch}.{name}");
    let uint = |name: &str| -> Result<i64, GgufError> {
        let key = key(name);
        g.require(&key)?
            .as_u64()
            .map(|v| v as i64)
            .ok_or_else(|| bad(g, &key, "is not a whole number"))
    };
    let float = |name: &str, default: f64| g.get(&key(name)).and_then(Value::as_f64).unwrap_or(default);
    let (layers, hidden, ffn, heads) = (
        uint("block_count")?,
        uint("embedding_length")?,
        uint("feed_forward_length")?,
        uint("attention.head_count")?,
    );
    let kv_heads = g
        .get(&key("attention.head_count_kv"))
        .and_then(Value::as_u64)
        .map_or(heads, |v| v as i64);
    let tokens: Vec<&str> = g
        .require("tokenizer.ggml.tokens")?
        .as_array()
        .ok_or_else(|| bad(g, "tokenizer.ggml.tokens", "is not an array"))?
        .iter()
        .map(|t| t.as_str().unwrap_or_default())
        .collect();
    // Names and shapes are checked before anything is written.
    let mut plan = Vec::new();
    for (name, info) in &g.tensors {
        // Rotary frequencies, when stored, follow from the metadata.
        if name == "rope_freqs.weight" {
            continue;
        }
        let (hf, permute) = hf_name(name, heads, kv_heads, interleaved).ok_or_else(|| GgufError::Format {
            path: g.path.clone(),
            what: format!("tensor `{name}` is not one of a {arch} model's"),
        })?;
        // Dimensions fit in usize: their product was checked when the file was opened.
        let shape: Vec<usize> = info.dims.iter().rev().map(|&d| d as usize).collect();
        let permute = permute.map(|h| usize::try_from(h).unwrap_or(0));
        if let Some(h) = permute.filter(|&h| !splits_into_heads(&shape, h)) {
            return Err(GgufError::Format {
                path: g.path.clone(),
                what: format!("tensor `{name}` of shape {shape:?} does not split into {h} heads"),
            });
        }
        plan.push(Planned {
            hf,
            gguf: name,
            permute,
            shape,
        });
    }
    plan.sort_by(|a, b| a.hf.cmp(&b.hf));
    let tied = !g.tensors.contains_key("output.weight");
    write_weights(g, &out.join("model.safetensors"), &plan)?;
    let token_id = |key: &str| g.get(key).and_then(Value::as_u64);
    let (bos, eos) = (
        token_id("tokenizer.ggml.bos_token_id"),
        token_id("tokenizer.ggml.eos_token_id"),
    );
    write(
        out,
        "config.json",
        &json!({
            "architectures": [architecture],
            "model_type": arch,
            "vocab_size": tokens.len(),
            "hidden_size": hidden,
            "intermediate_size": ffn,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "hidden_act": "silu",
            "rms_norm_eps": float("attention.layer_norm_rms_epsilon", 1e-5),
            "rope_theta": float("rope.freq_base", 10000.0),
            "max_position_embeddings": g.get(&key("context_length")).and_then(Value::as_u64).unwrap_or(2048),
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

/// Qwen2's pre-tokenizer split (its `tokenization_qwen2.py`).
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

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
        // Qwen2's split (letters with one leading non-letter, digits one by one, ...), then the
        // byte-level mapping alone, as transformers builds a GGUF's `qwen2` tokenizer.
        "qwen2" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}),
        other => {
            return Err(bad(
                g,
                "tokenizer.ggml.pre",
                &format!("is `{other}`; secvec rebuilds the `smollm`, `qwen2`, `gpt2` and `default` pre-tokenizers"),
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

#[cfg(test)]
mod tests {
    use super::super::tests::File;
    use super::*;

    #[test]
    fn weights_are_written_one_tensor_at_a_time_as_safetensors_with_q_and_k_unpermuted() {
        // One layer, hidden 8, two query heads of width 4 and one key/value head.
        let mut f = File::default();
        f.str("general.architecture", "llama");
        f.u32("llama.block_count", 1);
        f.u32("llama.embedding_length", 8);
        f.u32("llama.feed_forward_length", 8);
        f.u32("llama.attention.head_count", 2);
        f.u32("llama.attention.head_count_kv", 1);
        f.str("tokenizer.ggml.model", "gpt2");
        f.strs("tokenizer.ggml.tokens", &["a", "b", "c"]);
        f.strs("tokenizer.ggml.merges", &[]);
        let counting = |n: usize| (0..n).map(|i| i as f32).collect::<Vec<_>>();
        f.f32("token_embd.weight", &[8, 3], &counting(24));
        f.f32("blk.0.attn_q.weight", &[8, 8], &counting(64));
        f.f32("blk.0.attn_k.weight", &[8, 4], &counting(32));
        f.f32("output_norm.weight", &[8], &counting(8));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.gguf"), f.bytes()).unwrap();
        write_hf(&Gguf::open(&dir.path().join("m.gguf")).unwrap(), dir.path()).unwrap();

        let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let get = |name: &str| {
            let t = st.tensor(name).unwrap();
            let values: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (t.shape().to_vec(), values)
        };
        assert_eq!(get("model.embed_tokens.weight"), (vec![3, 8], counting(24)));
        assert_eq!(get("model.norm.weight"), (vec![8], counting(8)));
        let rows = |order: &[usize], width: usize| -> Vec<f32> {
            order
                .iter()
                .flat_map(|&r| (0..width).map(move |c| (r * width + c) as f32))
                .collect()
        };
        // Per head, the interleaved pairs (0, 1), (2, 3) become the halves [0, 2 | 1, 3].
        assert_eq!(
            get("model.layers.0.self_attn.q_proj.weight"),
            (vec![8, 8], rows(&[0, 2, 1, 3, 4, 6, 5, 7], 8))
        );
        assert_eq!(
            get("model.layers.0.self_attn.k_proj.weight"),
            (vec![4, 8], rows(&[0, 2, 1, 3], 8))
        );
        // The header lists the tensors in the order safetensors' own writer uses: by name.
        let names: Vec<String> = st.names().into_iter().cloned().collect();
        assert_eq!(names.len(), 4);
        let json_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(json_len % 8, 0);
        let header: serde_json::Map<String, Json> = serde_json::from_slice(&bytes[8..8 + json_len]).unwrap();
        let order: Vec<&String> = header.keys().collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
    }
}
