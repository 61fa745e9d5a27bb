//! `init-model`'s work: a tokenizer trained on the input text and seeded random weights.
//! Linked into `secvec-worker` alone (see `worker/src/lib.rs`).

use std::path::Path;

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use secvec_model::config::{ModelConfig, Norm};
use secvec_model::tokenizer::{TextTokenizer, EOS};
use secvec_stage::StageContext;
use secvec_stages::init_model::{InitArch, InitModelError, InitModelParams};
use serde_json::json;
use tch::Tensor;

pub fn run(p: &InitModelParams, ctx: &StageContext) -> anyhow::Result<()> {
    if p.num_heads <= 0 || p.num_kv_heads <= 0 || p.hidden_size % p.num_heads != 0 || p.num_heads % p.num_kv_heads != 0
    {
        return Err(InitModelError::Shape {
            hidden: p.hidden_size,
            heads: p.num_heads,
            kv: p.num_kv_heads,
        }
        .into());
    }
    let mut texts = Vec::new();
    for input in ctx.inputs("text") {
        collect_text(&input.path, &p.text_fields, &mut texts)?;
    }
    if texts.is_empty() {
        let names: Vec<String> = ctx
            .inputs("text")
            .iter()
            .map(|i| i.path.display().to_string())
            .collect();
        return Err(InitModelError::NoText(names.join(", "), p.text_fields.clone()).into());
    }
    ctx.message("training tokenizer");
    let tokenizer = TextTokenizer::train_bpe(texts.iter(), p.vocab_size)?;
    tokenizer.save(&ctx.out_dir().join("tokenizer.json"))?;
    let eos = tokenizer.token_id(EOS).expect("trained with EOS");
    let config = hf_config(p, eos);
    let text = serde_json::to_string_pretty(&config)?;
    ctx.write("config.json", &text)?;
    ctx.write(
        "generation_config.json",
        serde_json::to_string_pretty(&json!({"bos_token_id": eos, "eos_token_id": eos}))?,
    )?;
    let parsed = ModelConfig::parse(Path::new("config.json"), &text)?;
    ctx.message("initialising weights");
    let mut rng = rand::rngs::StdRng::seed_from_u64(p.seed);
    let normal = Normal::new(0.0f32, p.initializer_range as f32)?;
    let tensors: Vec<(String, Tensor)> = tensor_specs(&parsed)
        .into_iter()
        .map(|(name, shape, init)| {
            let n: i64 = shape.iter().product();
            let t = match init {
                Init::Normal => Tensor::from_slice(&(0..n).map(|_| normal.sample(&mut rng)).collect::<Vec<f32>>()),
                Init::Ones => Tensor::ones([n], (tch::Kind::Float, tch::Device::Cpu)),
                Init::Zeros => Tensor::zeros([n], (tch::Kind::Float, tch::Device::Cpu)),
            };
            (name, t.view(shape.as_slice()))
        })
        .collect();
    Tensor::write_safetensors(&tensors, ctx.out_dir().join("model.safetensors"))?;
    Ok(())
}

fn collect_text(path: &Path, fields: &[String], out: &mut Vec<String>) -> anyhow::Result<()> {
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let mut f: Vec<_> = walkdir::WalkDir::new(path)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect();
        f.sort();
        f
    } else {
        vec![path.to_path_buf()]
    };
    for f in files {
        match f.extension().and_then(|e| e.to_str()) {
            Some("jsonl") => {
                for (i, line) in std::fs::read_to_string(&f)?.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| InitModelError::BadLine {
                        path: f.display().to_string(),
                        line: i + 1,
                        what: e.to_string(),
                    })?;
                    out.extend(
                        fields
                            .iter()
                            .filter_map(|k| v.get(k).and_then(|x| x.as_str()).map(String::from)),
                    );
                }
            }
            Some("txt") => out.push(std::fs::read_to_string(&f)?),
            _ => {}
        }
    }
    Ok(())
}

fn hf_config(p: &InitModelParams, eos: i64) -> serde_json::Value {
    let mut c = json!({
        "vocab_size": p.vocab_size,
        "hidden_size": p.hidden_size,
        "intermediate_size": p.intermediate_size,
        "num_hidden_layers": p.num_layers,
        "num_attention_heads": p.num_heads,
        "num_key_value_heads": p.num_kv_heads,
        "max_position_embeddings": p.max_position_embeddings,
        "initializer_range": p.initializer_range,
        "bos_token_id": eos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    });
    let extra = match p.arch {
        InitArch::Llama => json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false, "attention_bias": false}),
        InitArch::Qwen2 => json!({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
            "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": true, "use_sliding_window": false}),
        InitArch::Starcoder2 => json!({"architectures": ["Starcoder2ForCausalLM"], "model_type": "starcoder2",
            "hidden_act": "gelu_pytorch_tanh", "norm_epsilon": 1e-5, "rope_theta": 100000.0, "use_bias": true,
            "tie_word_embeddings": true, "sliding_window": null}),
    };
    for (k, v) in extra.as_object().expect("object") {
        c[k] = v.clone();
    }
    c
}

enum Init {
    Normal,
    Ones,
    Zeros,
}

/// Every tensor of a model with this config, as transformers names and initialises them.
fn tensor_specs(c: &ModelConfig) -> Vec<(String, Vec<i64>, Init)> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let (qd, kvd) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let layer_norm = matches!(c.norm, Norm::Layer { .. });
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![c.vocab_size, h],
        Init::Normal,
    )];
    let mut linear = |name: String, o: i64, inp: i64, bias: bool| {
        out.push((format!("{name}.weight"), vec![o, inp], Init::Normal));
        if bias {
            out.push((format!("{name}.bias"), vec![o], Init::Zeros));
        }
    };
    let mut norms = Vec::new();
    for l in 0..c.num_layers {
        let p = format!("model.layers.{l}");
        linear(format!("{p}.self_attn.q_proj"), qd, h, c.qkv_bias);
        linear(format!("{p}.self_attn.k_proj"), kvd, h, c.qkv_bias);
        linear(format!("{p}.self_attn.v_proj"), kvd, h, c.qkv_bias);
        linear(format!("{p}.self_attn.o_proj"), h, qd, c.o_bias);
        if c.gated_mlp {
            linear(format!("{p}.mlp.gate_proj"), i, h, c.mlp_bias);
            linear(format!("{p}.mlp.up_proj"), i, h, c.mlp_bias);
            linear(format!("{p}.mlp.down_proj"), h, i, c.mlp_bias);
        } else {
            linear(format!("{p}.mlp.c_fc"), i, h, c.mlp_bias);
            linear(format!("{p}.mlp.c_proj"), h, i, c.mlp_bias);
        }
        norms.push(format!("{p}.input_layernorm"));
        norms.push(format!("{p}.post_attention_layernorm"));
    }
    if !c.tie_word_embeddings {
        linear("lm_head".to_string(), c.vocab_size, h, false);
    }
    norms.push("model.norm".to_string());
    for n in norms {
        out.push((format!("{n}.weight"), vec![h], Init::Ones));
        if layer_norm {
            out.push((format!("{n}.bias"), vec![h], Init::Zeros));
        }
    }
    out
}
