//! The imported SmolLM2 GGUF gives transformers' logits and token ids for the same GGUF.

mod common;

use std::path::PathBuf;
use std::process::Command;

use secvec_model::gguf::{hf::write_hf, Gguf};
use secvec_model::tokenizer::TextTokenizer;
use secvec_model::transformer::Transformer;
use tch::{Device, Kind, Tensor};

fn smollm2() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        eprintln!(
            "notice: {} is missing (run scripts/setup.sh); skipping the GGUF import test",
            path.display()
        );
    }
    path.is_file().then_some(path)
}

#[test]
fn the_imported_smollm2_gives_transformers_logits_and_token_ids() {
    let (Some(gguf), Some(python)) = (smollm2(), common::peft_python()) else {
        return;
    };
    let _g = tch::no_grad_guard();
    let dir = tempfile::tempdir().unwrap();
    write_hf(&Gguf::open(&gguf).unwrap(), dir.path()).unwrap();
    let model = Transformer::load(dir.path(), Device::Cpu, Kind::Float).unwrap();
    assert_eq!(
        (
            model.config.num_layers,
            model.config.hidden_size,
            model.config.vocab_size
        ),
        (30, 576, 49152)
    );
    let tokenizer = TextTokenizer::load(dir.path(), model.config.vocab_size).unwrap();
    let text = "def is_prime(n):\n    if n < 2024:\n        return <|im_end|> 'naïve'";
    let out = Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gguf_reference.py"))
        .args([gguf.to_str().unwrap(), text])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want_ids: Vec<i64> = serde_json::from_value(want["ids"].clone()).unwrap();
    let ids = tokenizer.encode(text).unwrap();
    assert_eq!(ids, want_ids, "token ids");
    let mut cache = model.new_cache(1, ids.len() as i64);
    let ours = model
        .forward(&Tensor::from_slice(&ids).unsqueeze(0), &mut cache)
        .unwrap()
        .squeeze_dim(0);
    let theirs: Vec<Vec<f32>> = serde_json::from_value(want["logits"].clone()).unwrap();
    let d = (&ours - Tensor::from_slice2(&theirs)).abs().max().double_value(&[]);
    assert!(d < 1e-4, "max |Δlogit| = {d}");
}
