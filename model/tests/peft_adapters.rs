//! LoRA adapters cross between secvec and PEFT in both directions.

mod common;

use std::process::Command;

use common::{fixtures, peft_python};
use secvec_model::lora::{Adapter, Attach, LoraConfig};
use secvec_model::transformer::Transformer;
use tch::{Device, Kind, Tensor};

fn prompt() -> Tensor {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("llama/reference.json")).unwrap()).unwrap();
    let ids: Vec<i64> = serde_json::from_value(r["input_ids"].clone()).unwrap();
    Tensor::from_slice(&ids).unsqueeze(0)
}

fn logits(model: &Transformer) -> Tensor {
    let mut cache = model.new_cache(1, 64);
    model.forward(&prompt(), &mut cache).unwrap().squeeze_dim(0)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn a_peft_adapter_gives_peft_logits_merged_and_unmerged() {
    let _g = tch::no_grad_guard();
    let dir = fixtures().join("llama-lora-peft");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let want: Vec<Vec<f32>> = serde_json::from_value(r["logits"].clone()).unwrap();
    let want = Tensor::from_slice2(&want);
    let adapter = Adapter::load(&dir, Device::Cpu).unwrap();
    assert_eq!(
        (adapter.config.r, adapter.config.scaling(), adapter.modules.len()),
        (4, 2.0, 14)
    );
    let base = Transformer::load(&fixtures().join("llama"), Device::Cpu, Kind::Float).unwrap();
    assert!(
        max_diff(&logits(&base), &want) > 1e-2,
        "the adapter must change the logits for this test to mean anything"
    );
    for how in [Attach::Merged, Attach::Unmerged] {
        let mut model = Transformer::load(&fixtures().join("llama"), Device::Cpu, Kind::Float).unwrap();
        adapter.attach(&mut model, how).unwrap();
        let d = max_diff(&logits(&model), &want);
        assert!(d < 1e-4, "{how:?}: max |Δlogit| = {d}");
    }
}

#[test]
fn a_secvec_adapter_gives_the_same_logits_in_peft() {
    let _g = tch::no_grad_guard();
    let Some(python) = peft_python() else { return };
    let mut model = Transformer::load(&fixtures().join("llama"), Device::Cpu, Kind::Float).unwrap();
    let config = LoraConfig {
        r: 8,
        alpha: 16.0,
        dropout: 0.1,
        ..LoraConfig::default()
    };
    let mut adapter = Adapter::init(&mut model, config, "model/fixtures/llama", 7);
    // PEFT initialises B to zero; give it values so the adapter changes the model.
    for (i, (_, (_, b))) in adapter.modules.iter_mut().enumerate() {
        tch::manual_seed(i as i64);
        *b = Tensor::randn(b.size(), (Kind::Float, Device::Cpu)) * 0.1;
    }
    let dir = tempfile::tempdir().unwrap();
    adapter.save(dir.path()).unwrap();
    let reloaded = Adapter::load(dir.path(), Device::Cpu).unwrap();
    reloaded.attach(&mut model, Attach::Unmerged).unwrap();
    let ours = logits(&model);
    let out = Command::new(&python)
        .arg(fixtures().join("peft_reference.py"))
        .args(["logits", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs: Vec<Vec<f32>> = serde_json::from_slice(&out.stdout).unwrap();
    let d = max_diff(&ours, &Tensor::from_slice2(&theirs));
    assert!(d < 1e-4, "max |Δlogit| = {d}");
}
