//! secvec's transformer against what transformers computes on the same tiny models
//! (fixtures written by model/fixtures/make_fixtures.py).

use std::path::PathBuf;

use secvec_model::sampling::{next_tokens, top_p_filter};
use secvec_model::transformer::{KvCache, Transformer};
use tch::{Device, Kind, Tensor};

const ARCHS: [&str; 4] = ["llama", "llama-linear-rope", "qwen2", "starcoder2"];

fn fixture(name: &str) -> (PathBuf, serde_json::Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
    let reference = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    (dir, reference)
}

fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

/// Logits `[1, t, vocab]` of the fixture's prompt, and the cache positioned after it.
fn prompt_logits(model: &Transformer, r: &serde_json::Value) -> (Tensor, KvCache) {
    let mut cache = model.new_cache(1, 64);
    let logits = model
        .forward(&Tensor::from_slice(&ids(&r["input_ids"])).unsqueeze(0), &mut cache)
        .unwrap();
    (logits, cache)
}

fn reference_logits(r: &serde_json::Value) -> Tensor {
    let rows: Vec<Vec<f32>> = serde_json::from_value(r["logits"].clone()).unwrap();
    Tensor::from_slice2(&rows)
}

#[test]
fn logits_match_transformers_within_1e_4() {
    let _g = tch::no_grad_guard();
    for arch in ARCHS {
        let (dir, r) = fixture(arch);
        let model = Transformer::load(&dir, Device::Cpu, Kind::Float).unwrap();
        let logits = prompt_logits(&model, &r).0.squeeze_dim(0);
        let diff = (&logits - reference_logits(&r)).abs().max().double_value(&[]);
        eprintln!("{arch}: max |Δlogit| = {diff:.2e}");
        assert!(diff < 1e-4, "{arch}: max |Δlogit| = {diff}");
    }
}

#[test]
fn greedy_continuations_match_transformers() {
    let _g = tch::no_grad_guard();
    for arch in ARCHS {
        let (dir, r) = fixture(arch);
        let model = Transformer::load(&dir, Device::Cpu, Kind::Float).unwrap();
        let want = ids(&r["greedy"]);
        let (mut logits, mut cache) = prompt_logits(&model, &r);
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let last = logits.select(1, -1);
            let next = next_tokens(&last, 0.0, 1.0, &mut [])[0];
            got.push(next);
            logits = model
                .forward(&Tensor::from_slice(&[next]).unsqueeze(0), &mut cache)
                .unwrap();
        }
        assert_eq!(got, want, "{arch}");
    }
}

#[test]
fn top_p_keeps_the_same_tokens_as_transformers() {
    let _g = tch::no_grad_guard();
    for arch in ARCHS {
        let (dir, r) = fixture(arch);
        let model = Transformer::load(&dir, Device::Cpu, Kind::Float).unwrap();
        let last = prompt_logits(&model, &r).0.select(1, -1) / r["top_p_temperature"].as_f64().unwrap();
        for (p, kept) in r["top_p_kept"].as_object().unwrap() {
            let filtered = top_p_filter(&last, p.parse().unwrap());
            let got: Vec<i64> = Vec::try_from(filtered.get(0).isfinite().nonzero().flatten(0, -1)).unwrap();
            assert_eq!(got, ids(kept), "{arch} top_p={p}");
        }
    }
}

#[test]
fn bf16_stays_close_to_f32() {
    let _g = tch::no_grad_guard();
    for arch in ARCHS {
        let (dir, r) = fixture(arch);
        let model = Transformer::load(&dir, Device::Cpu, Kind::BFloat16).unwrap();
        let logits = prompt_logits(&model, &r).0.squeeze_dim(0);
        let want = reference_logits(&r);
        let scale = want.abs().max().double_value(&[]);
        let diff = (&logits - &want).abs().max().double_value(&[]);
        assert!(
            diff < 0.05 * scale,
            "{arch}: bf16 max |Δlogit| = {diff} against logits up to {scale}"
        );
    }
}

#[test]
fn the_committed_fixtures_are_what_the_script_makes() {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import transformers"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("notice: no .venv with transformers (run scripts/setup.sh); not regenerating fixtures");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/make_fixtures.py");
    let run = std::process::Command::new(&python)
        .arg(script)
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for arch in ARCHS {
        let (_, committed) = fixture(arch);
        let fresh: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join(arch).join("reference.json")).unwrap())
                .unwrap();
        assert_eq!(fresh["input_ids"], committed["input_ids"], "{arch}");
        assert_eq!(fresh["greedy"], committed["greedy"], "{arch}");
        assert_eq!(fresh["top_p_kept"], committed["top_p_kept"], "{arch}");
        let a: Vec<Vec<f32>> = serde_json::from_value(fresh["logits"].clone()).unwrap();
        let b: Vec<Vec<f32>> = serde_json::from_value(committed["logits"].clone()).unwrap();
        let d = (Tensor::from_slice2(&a) - Tensor::from_slice2(&b))
            .abs()
            .max()
            .double_value(&[]);
        assert!(d < 1e-5, "{arch}: regenerated logits differ by {d}");
    }
}
