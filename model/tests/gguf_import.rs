//! An imported GGUF gives transformers' token ids, logits and greedy continuations for the same
//! GGUF: SmolLM2-135M (llama, Q4_1) and Qwen2.5-Coder-0.5B-Instruct (qwen2 with q/k/v biases and
//! an untied head; Q4_K, Q6_K, Q5_0, Q8_0 and F32 tensors), as scripts/setup.sh fetches them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use secvec_model::generate::{generate, Batching, Request, Sampling};
use secvec_model::gguf::{hf::write_hf, Gguf};
use secvec_model::tokenizer::TextTokenizer;
use secvec_model::transformer::Transformer;
use tch::{Device, Kind, Tensor};

/// Greedy tokens compared after each prompt.
const NEW_TOKENS: usize = 12;

fn fetched(path: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.models").join(path);
    if !path.is_file() {
        eprintln!(
            "notice: {} is missing (run scripts/setup.sh); skipping the GGUF import test",
            path.display()
        );
    }
    path.is_file().then_some(path)
}

/// Imports `gguf`, checks its shape, and compares every text's ids, logits (max |Δ| < 1e-4) and
/// greedy continuation with transformers'.
fn equals_transformers(gguf: &Path, python: &Path, shape: (usize, i64, i64), texts: &[&str]) {
    let _g = tch::no_grad_guard();
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, reference) = (dir.path().join("model"), dir.path().join("reference"));
    std::fs::create_dir_all(&model_dir).unwrap();
    std::fs::create_dir_all(&reference).unwrap();
    write_hf(&Gguf::open(gguf).unwrap(), &model_dir).unwrap();
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gguf_reference.py"))
        .arg(gguf)
        .arg(&reference)
        .arg(NEW_TOKENS.to_string())
        .args(texts)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reference.join("reference.json")).unwrap()).unwrap();

    let model = Transformer::load(&model_dir, Device::Cpu, Kind::Float).unwrap();
    let c = &model.config;
    assert_eq!((c.num_layers, c.hidden_size, c.vocab_size), shape);
    let tokenizer = TextTokenizer::load(&model_dir, c.vocab_size).unwrap();
    for (k, text) in texts.iter().enumerate() {
        let want_ids: Vec<i64> = serde_json::from_value(want["ids"][k].clone()).unwrap();
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(ids, want_ids, "token ids of {text:?}");
        let mut cache = model.new_cache(1, ids.len() as i64);
        let ours = model
            .forward(&Tensor::from_slice(&ids).unsqueeze(0), &mut cache)
            .unwrap()
            .squeeze_dim(0);
        let bytes = std::fs::read(reference.join(format!("logits-{k}.f32"))).unwrap();
        let theirs: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let theirs = Tensor::from_slice(&theirs).view([ids.len() as i64, c.vocab_size]);
        let d = (&ours - theirs).abs().max().double_value(&[]);
        assert!(d < 1e-4, "{text:?}: max |Δlogit| = {d}");

        let greedy = Sampling::greedy(NEW_TOKENS);
        let ours = generate(
            &model,
            &tokenizer,
            Request::new(&ids, 0),
            &greedy,
            Batching::rows(1),
            &[],
        )
        .unwrap();
        let want_greedy: Vec<i64> = serde_json::from_value(want["greedy"][k].clone()).unwrap();
        assert_eq!(ours[0].token_ids, want_greedy, "greedy continuation of {text:?}");
    }
}

#[test]
fn the_imported_smollm2_gives_transformers_logits_and_token_ids() {
    let (Some(gguf), Some(python)) = (
        fetched("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        common::peft_python(),
    ) else {
        return;
    };
    let texts = ["def is_prime(n):\n    if n < 2024:\n        return <|im_end|> 'naïve'"];
    equals_transformers(&gguf, &python, (30, 576, 49152), &texts);
}

#[test]
fn the_imported_qwen_coder_gives_transformers_logits_token_ids_and_greedy_code() {
    let (Some(gguf), Some(python)) = (
        fetched("qwen2.5-coder-0.5b/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"),
        common::peft_python(),
    ) else {
        return;
    };
    let texts = [
        "def read_upload(name):\n    path = os.path.join(UPLOADS, name)\n",
        "<|im_start|>user\nWrite a C function that copies a string into a buffer of 16 bytes.<|im_end|>\n<|im_start|>assistant\n",
        "query = \"SELECT * FROM users WHERE id = %s\"  # 2024 naïve   tabs\tand spaces\n",
    ];
    equals_transformers(&gguf, &python, (24, 896, 151936), &texts);
}
