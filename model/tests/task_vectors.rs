//! Task-vector diagnostics equal the dense computation, and a steered adapter is exactly the
//! weighted sum of its inputs, as PEFT's `cat` combination computes it.

mod common;

use std::process::Command;

use common::{fixtures, peft_python};
use secvec_model::lora::{Adapter, Attach, LoraConfig};
use secvec_model::task_vector::{self, combine, diagnose, Named};
use secvec_model::transformer::Transformer;
use tch::{Device, Kind, Tensor};

fn base() -> Transformer {
    Transformer::load(&fixtures().join("llama"), Device::Cpu, Kind::Float).unwrap()
}

/// An adapter with random A and B (PEFT would start B at zero).
fn random_adapter(r: i64, alpha: f64, seed: i64) -> Adapter {
    let mut model = base();
    let config = LoraConfig {
        r,
        alpha,
        dropout: 0.0,
        ..LoraConfig::default()
    };
    let mut adapter = Adapter::init(&mut model, config, "model/fixtures/llama", seed as u64);
    tch::manual_seed(seed);
    for (_, (_, b)) in adapter.modules.iter_mut() {
        *b = Tensor::randn(b.size(), (Kind::Float, Device::Cpu)) * 0.1;
    }
    adapter
}

fn dense(adapter: &Adapter, module: &str) -> Tensor {
    let (a, b) = &adapter.modules[module];
    b.to_kind(Kind::Double).matmul(&a.to_kind(Kind::Double)) * adapter.config.scaling()
}

/// Cosine and sign agreement over the modules `keep` selects, the dense way.
fn dense_similarity(x: &Adapter, y: &Adapter, keep: impl Fn(&str) -> bool) -> (f64, f64, u64) {
    let (mut vx, mut vy) = (Vec::new(), Vec::new());
    for module in x.modules.keys().filter(|m| keep(m)) {
        vx.push(dense(x, module).reshape([-1]));
        vy.push(dense(y, module).reshape([-1]));
    }
    let (vx, vy) = (Tensor::cat(&vx, 0), Tensor::cat(&vy, 0));
    let cosine =
        (&vx * &vy).sum(Kind::Double).double_value(&[]) / (vx.norm().double_value(&[]) * vy.norm().double_value(&[]));
    // Signs as the f32 updates have them (the streamed computation forms them in f32).
    let (sx, sy) = (vx.to_kind(Kind::Float).sign(), vy.to_kind(Kind::Float).sign());
    let product = sx * sy;
    let both = product.ne(0.0).sum(Kind::Int64).int64_value(&[]) as u64;
    let agree = product.gt(0.0).sum(Kind::Int64).int64_value(&[]) as f64;
    (cosine, 100.0 * agree / both as f64, both)
}

#[test]
fn diagnostics_from_the_factors_equal_the_dense_computation() {
    let _g = tch::no_grad_guard();
    let (x, y) = (random_adapter(4, 8.0, 1), random_adapter(8, 8.0, 2));
    // Share part of the direction, so the cosine is not merely noise around zero.
    let mut y = y;
    for (module, (a, b)) in y.modules.iter_mut() {
        let (xa, xb) = &x.modules[module];
        *a = Tensor::cat(&[xa.shallow_clone(), a.narrow(0, 0, 4)], 0);
        *b = Tensor::cat(&[xb * 2.0, b.narrow(1, 0, 4)], 1);
    }
    let d = diagnose(
        &Named {
            name: "secure",
            adapter: &x,
        },
        &Named {
            name: "vulnerable",
            adapter: &y,
        },
    )
    .unwrap();
    let (cosine, sign, entries) = dense_similarity(&x, &y, |_| true);
    assert!(cosine > 0.1, "the test's vectors should be alike: {cosine}");
    assert!((d.all.cosine - cosine).abs() < 1e-6, "{} vs {cosine}", d.all.cosine);
    assert!(
        (d.all.sign_agreement - sign).abs() < 1e-6,
        "{} vs {sign}",
        d.all.sign_agreement
    );
    assert_eq!(d.all.entries, entries);
    let (cosine, sign, _) = dense_similarity(&x, &y, |m| m.ends_with("down_proj"));
    let down = &d.by_module["down_proj"];
    assert!((down.cosine - cosine).abs() < 1e-6 && (down.sign_agreement - sign).abs() < 1e-6);
    let (cosine, _, _) = dense_similarity(&x, &y, |m| m.starts_with("model.layers.1."));
    assert!((d.by_layer[&1].cosine - cosine).abs() < 1e-6);
    let same = diagnose(
        &Named {
            name: "secure",
            adapter: &x,
        },
        &Named {
            name: "vulnerable",
            adapter: &x,
        },
    )
    .unwrap();
    assert!((same.all.cosine - 1.0).abs() < 1e-9 && same.all.sign_agreement == 100.0);
}

fn logits(model: &Transformer) -> Tensor {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("llama/reference.json")).unwrap()).unwrap();
    let ids: Vec<i64> = serde_json::from_value(r["input_ids"].clone()).unwrap();
    let mut cache = model.new_cache(1, 64);
    model
        .forward(&Tensor::from_slice(&ids).unsqueeze(0), &mut cache)
        .unwrap()
        .squeeze_dim(0)
}

#[test]
fn a_steered_adapter_is_the_weighted_sum_of_its_inputs_as_peft_cat_computes_it() {
    let _g = tch::no_grad_guard();
    let (sec, vul) = (random_adapter(4, 8.0, 3), random_adapter(8, 32.0, 4));
    let (alpha, theta) = (0.5, 1.5);
    let steered = combine(&[(&sec, alpha), (&vul, -theta)], "model/fixtures/llama");
    assert_eq!((steered.config.r, steered.config.scaling()), (12, 1.0));
    for module in sec.modules.keys() {
        let want = dense(&sec, module) * alpha - dense(&vul, module) * theta;
        let got = dense(&steered, module);
        let rel = (&got - &want).norm().double_value(&[]) / want.norm().double_value(&[]);
        assert!(rel < 1e-6, "{module}: {rel}");
    }
    let mut merged = base();
    steered.attach(&mut merged, Attach::Merged).unwrap();
    let mut unmerged = base();
    steered.attach(&mut unmerged, Attach::Unmerged).unwrap();
    let ours = logits(&merged);
    let d = (&ours - logits(&unmerged)).abs().max().double_value(&[]);
    assert!(d < 1e-4, "merged vs unmerged: {d}");
    assert!(
        (&ours - logits(&base())).abs().max().double_value(&[]) > 1e-2,
        "steering must change the logits for this test to mean anything"
    );

    // Written out whole, the steered model gives the same logits.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("materialized");
    std::fs::create_dir(&out).unwrap();
    secvec_model::materialize::materialize(&fixtures().join("llama"), &steered, &out).unwrap();
    let whole = Transformer::load(&out, Device::Cpu, Kind::Float).unwrap();
    let d = (&ours - logits(&whole)).abs().max().double_value(&[]);
    assert!(d < 1e-4, "adapter vs materialized: {d}");
    assert!(out.join("config.json").is_file() && out.join("tokenizer.json").is_file());

    let Some(python) = peft_python() else { return };
    sec.save(&dir.path().join("sec")).unwrap();
    vul.save(&dir.path().join("vul")).unwrap();
    let out = Command::new(&python)
        .arg(fixtures().join("peft_reference.py"))
        .arg("cat")
        .args([dir.path().join("sec"), dir.path().join("vul")])
        .args([alpha.to_string(), (-theta).to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs: Vec<Vec<f32>> = serde_json::from_slice(&out.stdout).unwrap();
    let d = (&ours - Tensor::from_slice2(&theirs)).abs().max().double_value(&[]);
    assert!(d < 1e-4, "secvec vs PEFT cat: max |Δlogit| = {d}");
}

#[test]
fn adapters_of_another_base_or_other_modules_are_refused_by_name() {
    let (x, mut y) = (random_adapter(4, 8.0, 5), random_adapter(4, 8.0, 6));
    let sec = Named {
        name: "secure",
        adapter: &x,
    };
    y.base_model = "blake3:other".into();
    let err = task_vector::check_compatible(&sec, &vulnerable(&y))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("different base models: `model/fixtures/llama` and `blake3:other`"),
        "{err}"
    );
    y.base_model = x.base_model.clone();
    y.modules.remove("model.layers.1.mlp.up_proj");
    let err = task_vector::check_compatible(&sec, &vulnerable(&y))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "module `model.layers.1.mlp.up_proj` is adapted by the secure adapter but not by the vulnerable one; merge adapters with the same target modules"
    );
}

fn vulnerable(adapter: &Adapter) -> Named<'_> {
    Named {
        name: "vulnerable",
        adapter,
    }
}
