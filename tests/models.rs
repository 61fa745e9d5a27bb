//! Model stages through the CLI: bad model directories and devices fail clearly and leave the
//! cache clean; the tiny model `init-model` writes loads in transformers with the same logits.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{copy_dir, Workspace};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("model/fixtures").join(name)
}

/// A manifest generating from the model directory `model` with `params`.
fn generate_manifest(model: &str, params: &str) -> String {
    format!(
        "name: m\nstages:\n  gen:\n    kind: generate\n    inputs:\n      model: {{path: {model}}}\n      prompts: {{path: prompts.jsonl}}\n    params: {{max_new_tokens: 4, {params}}}\n"
    )
}

/// A manifest that pairs the quickstart data and initialises a tiny model `tiny` on it.
fn init_manifest(arch: &str, vocab: usize) -> String {
    format!("name: m\nstages:\n  pairs:\n    kind: pair\n    inputs: {{data: {{path: manifests/data/quickstart-pairs}}}}\n  tiny:\n    kind: init-model\n    inputs: {{text: pairs}}\n    params: {{arch: {arch}, vocab_size: {vocab}, hidden_size: 32, intermediate_size: 48, initializer_range: 0.3, seed: 3}}\n")
}

fn failure(ws: &Workspace) -> String {
    let out = ws.run(&["run", "m.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let ev = common::events(&out.stdout);
    assert_eq!(ev["gen"]["status"], "failed");
    let entries = std::fs::read_dir(ws.path().join(".secvec/ac"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(entries, 0, "a failed stage must not leave a cache entry");
    assert!(ws.run(&["cache", "verify"]).status.success());
    ev["gen"]["error"].as_str().unwrap().to_string()
}

fn workspace_with_model() -> Workspace {
    let ws = Workspace::new();
    copy_dir(&fixture("llama"), &ws.path().join("model"));
    ws.write("prompts.jsonl", "{\"id\": 1, \"prompt\": \"def f(x):\"}\n");
    ws
}

#[test]
fn truncated_and_corrupt_weights_fail_with_the_file_named() {
    let ws = workspace_with_model();
    ws.write("m.yaml", &generate_manifest("model", "device: cpu"));
    let weights = ws.path().join("model/model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = failure(&ws);
    assert!(
        err.contains("model.safetensors: tensor `") && err.contains("runs past the end of the file"),
        "{err}"
    );
    let mut garbage = bytes.clone();
    garbage[8..40].copy_from_slice(&[b'#'; 32]);
    std::fs::write(&weights, &garbage).unwrap();
    let err = failure(&ws);
    assert!(
        err.contains("model.safetensors is not a valid safetensors file"),
        "{err}"
    );
}

#[test]
fn a_tokenizer_that_does_not_fit_the_vocab_fails() {
    let ws = workspace_with_model();
    ws.write("m.yaml", &init_manifest("llama", 300));
    ws.run_json(&["m.yaml"]);
    // The 300-token model gets the fixture's 384-token tokenizer.
    copy_dir(&ws.path().join("out/m/tiny"), &ws.path().join("small"));
    std::fs::copy(
        fixture("llama").join("tokenizer.json"),
        ws.path().join("small/tokenizer.json"),
    )
    .unwrap();
    std::fs::remove_dir_all(ws.path().join(".secvec")).unwrap();
    ws.write("m.yaml", &generate_manifest("small", "device: cpu"));
    let err = failure(&ws);
    assert!(
        err.contains("small/tokenizer.json has 384 tokens but the model's vocab_size is 300"),
        "{err}"
    );
}

#[test]
fn cuda_without_cuda_fails_clearly_when_planning() {
    if tch::Cuda::is_available() {
        eprintln!("notice: this machine has CUDA; the no-CUDA error cannot be shown");
        return;
    }
    let ws = workspace_with_model();
    ws.write("m.yaml", &generate_manifest("model", "device: cuda"));
    for command in ["plan", "run"] {
        let out = ws.run(&[command, "m.yaml"]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("m.yaml:"), "{err}");
        assert!(
            err.contains("device `cuda` was requested but libtorch sees 0 CUDA device(s) here; use `cpu` or `auto`"),
            "{err}"
        );
    }
}

#[test]
fn init_model_output_loads_in_transformers_with_the_same_logits() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if !Command::new(&python)
        .args(["-c", "import transformers"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("notice: no .venv with transformers (run scripts/setup.sh); skipping");
        return;
    }
    let ws = Workspace::new();
    for arch in ["llama", "qwen2", "starcoder2"] {
        ws.write("m.yaml", &init_manifest(arch, 300));
        ws.run_json(&["m.yaml"]);
        let dir = std::fs::canonicalize(ws.path().join("out/m/tiny")).unwrap();
        let ids = [5i64, 17, 200, 42, 7, 99, 3];
        let script = format!(
            "import json, torch\nfrom transformers import AutoModelForCausalLM\nm = AutoModelForCausalLM.from_pretrained('{}', attn_implementation='eager').eval()\nwith torch.no_grad():\n    print(json.dumps(m(torch.tensor([{ids:?}])).logits[0].tolist()))\n",
            dir.display()
        );
        let out = Command::new(&python).args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{arch}: {}", String::from_utf8_lossy(&out.stderr));
        let theirs: Vec<Vec<f32>> = serde_json::from_slice(&out.stdout).unwrap();
        let _g = tch::no_grad_guard();
        let model = secvec_model::transformer::Transformer::load(&dir, tch::Device::Cpu, tch::Kind::Float).unwrap();
        let mut cache = model.new_cache(1, 16);
        let ours = model
            .forward(&tch::Tensor::from_slice(&ids).unsqueeze(0), &mut cache)
            .unwrap()
            .squeeze_dim(0);
        let d = (ours - tch::Tensor::from_slice2(&theirs)).abs().max().double_value(&[]);
        assert!(d < 1e-4, "{arch}: max |Δlogit| = {d}");
    }
}

#[test]
fn init_model_is_deterministic_from_its_seed() {
    let digest = |seed: u64| {
        let ws = Workspace::new();
        ws.write(
            "m.yaml",
            &init_manifest("qwen2", 300).replace("seed: 3", &format!("seed: {seed}")),
        );
        ws.run_json(&["m.yaml"])["tiny"]["output"].as_str().unwrap().to_string()
    };
    assert_eq!(digest(3), digest(3));
    assert_ne!(digest(3), digest(4));
}

#[test]
fn interrupting_a_run_stops_its_worker() {
    use std::io::{BufRead, BufReader};
    let ws = workspace_with_model();
    ws.write(
        "m.yaml",
        "name: m\nstages:\n  gen:\n    kind: generate\n    inputs:\n      model: {path: model}\n      prompts: {path: prompts.jsonl}\n    params: {n: 4096, batch_size: 4, max_new_tokens: 48, temperature: 1.0}\n",
    );
    let mut child = ws
        .cmd(&["run", "m.yaml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().starts_with("running gen")));
    // The worker is secvec's child while the stage runs.
    let worker = (0..100)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let tasks = std::fs::read_dir(format!("/proc/{}/task", child.id())).ok()?;
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|c| c.split_whitespace().map(String::from).collect::<Vec<_>>())
                .find(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/exe"))
                        .is_ok_and(|e| e.to_string_lossy().ends_with("secvec-worker"))
                })
        })
        .expect("the stage runs in secvec-worker");
    let started = std::time::Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    assert!(
        !std::path::Path::new(&format!("/proc/{worker}")).exists(),
        "worker {worker} outlived the run"
    );
    let entries = std::fs::read_dir(ws.path().join(".secvec/ac"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(entries, 0, "an interrupted stage must not leave a cache entry");
}

#[test]
fn a_training_killed_mid_way_resumes_and_ends_with_the_uninterrupted_adapter() {
    let ws = Workspace::new();
    ws.write(
        "t.yaml",
        "name: t\nstages:\n  pairs:\n    kind: pair\n    inputs: {data: {path: manifests/data/quickstart-pairs}}\n  tiny:\n    kind: init-model\n    inputs: {text: pairs}\n    params: {arch: llama, vocab_size: 300, hidden_size: 32, intermediate_size: 48, num_layers: 2, seed: 1}\n  sft:\n    kind: train\n    inputs: {model: tiny, pairs: pairs}\n    params: {method: sft, target: secure, r: 4, alpha: 8, epochs: 30, batch_size: 4, learning_rate: 0.001, checkpoint_every: 1}\n",
    );
    let whole = ws.run_json(&["t.yaml", "--cache", "whole", "--out", "out-whole"]);
    let mut child = ws
        .cmd(&["run", "t.yaml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once a few steps are checkpointed (dropout is on, so the resumed steps must draw
    // the same masks).
    let checkpointed = |ws: &Workspace| -> usize {
        std::fs::read_dir(ws.path().join(".secvec/scratch"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|d| std::fs::read(d.path().join("checkpoint.json")).ok())
            .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .filter_map(|v| v["logs"].as_array().map(Vec::len))
            .max()
            .unwrap_or(0)
    };
    let started = std::time::Instant::now();
    while checkpointed(&ws) < 5 {
        assert!(started.elapsed().as_secs() < 300, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let at_kill = checkpointed(&ws);
    assert!(at_kill < 150, "the training finished before it could be killed");
    let out = ws.run(&["run", "t.yaml", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notice  sft: resuming from the checkpoint after step"),
        "{stderr}"
    );
    let resumed = common::events(&out.stdout);
    assert_eq!(resumed["sft"]["status"], "ran");
    assert_eq!(
        resumed["sft"]["output"], whole["sft"]["output"],
        "the resumed adapter differs from the uninterrupted one (killed after {at_kill} steps)"
    );
    let leftover = std::fs::read_dir(ws.path().join(".secvec/scratch")).unwrap().count();
    assert_eq!(leftover, 0, "the checkpoint outlived the committed stage");
}

#[test]
fn safecoder_tuning_trains_its_three_kinds_of_samples_and_counts_what_it_leaves_out() {
    let ws = Workspace::new();
    ws.write(
        "instructions.jsonl",
        "{\"instruction\": \"Add two numbers.\", \"output\": \"def add(a, b):\\n    return a + b\\n\"}\n\
         {\"instruction\": \"Reverse a string.\", \"input\": \"s = 'abc'\", \"output\": \"def rev(s):\\n    return s[::-1]\\n\"}\n\
         {\"instruction\": \"Say nothing.\", \"output\": \"\"}\n",
    );
    ws.write(
        "t.yaml",
        "name: t\nstages:\n  pairs:\n    kind: pair\n    inputs: {data: {path: manifests/data/quickstart-pairs}}\n  tiny:\n    kind: init-model\n    inputs: {text: pairs}\n    params: {arch: llama, vocab_size: 300, hidden_size: 32, intermediate_size: 48, num_layers: 2, seed: 1}\n  sc:\n    kind: train\n    inputs: {model: tiny, pairs: pairs, instructions: {path: instructions.jsonl}}\n    params: {method: safecoder, target: secure, r: 4, alpha: 8, epochs: 1, batch_size: 4, upsample_to: 3}\n  sc-vul:\n    kind: train\n    inputs: {model: tiny, pairs: pairs, instructions: {path: instructions.jsonl}}\n    params: {method: safecoder, target: vulnerable, r: 4, alpha: 8, epochs: 1, batch_size: 4, upsample_to: 3}\n",
    );
    let ev = ws.run_json(&["t.yaml"]);
    assert_eq!(ev["sc"]["status"], "ran");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.path().join("out/t/sc/results.json")).unwrap()).unwrap();
    let row = &results["rows"][0];
    let (samples, skipped) = (&row["samples"], &row["skipped"]);
    assert_eq!(samples["instruction"], 2, "{row}");
    assert_eq!(skipped["empty_completion"], 1, "{row}");
    // 19 training pairs give a secure and a vulnerable sample each, less the sides with no
    // changed token (counted); upsampling only adds.
    let dropped = skipped["no_changed_tokens"].as_u64().unwrap();
    let trained = samples["preferred"].as_u64().unwrap() + samples["dispreferred"].as_u64().unwrap();
    assert!(trained >= 38 - dropped && dropped < 38, "{row}");
    assert_eq!(
        row["examples"].as_u64().unwrap(),
        trained + 2,
        "every example is one of the three kinds: {row}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.path().join("out/t/sc/adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["r"], 4);
    // The vulnerable adapter mirrors the secure one's losses: it is another adapter.
    let weights =
        |stage: &str| std::fs::read(ws.path().join(format!("out/t/{stage}/adapter_model.safetensors"))).unwrap();
    assert_eq!(ev["sc-vul"]["status"], "ran");
    assert_ne!(weights("sc"), weights("sc-vul"), "the target made no difference");
}

#[test]
fn merge_and_diagnose_take_trained_adapters_and_refuse_what_cannot_be_steered() {
    let ws = Workspace::new();
    let manifest = "name: t\nstages:\n  pairs:\n    kind: pair\n    inputs: {data: {path: manifests/data/quickstart-pairs}}\n  tiny:\n    kind: init-model\n    inputs: {text: pairs}\n    params: {arch: llama, vocab_size: 300, hidden_size: 32, intermediate_size: 48, num_layers: 2, seed: 1}\n  sft:\n    kind: train\n    matrix: {target: [secure, vulnerable]}\n    inputs: {model: tiny, pairs: pairs}\n    params: {method: sft, r: 4, alpha: 8, epochs: 1, batch_size: 8, learning_rate: 0.01}\n  d:\n    kind: diagnose\n    inputs: {secure: \"sft@target=secure\", vulnerable: \"sft@target=vulnerable\"}\n  m:\n    kind: merge\n    inputs: {secure: \"sft@target=secure\", vulnerable: \"sft@target=vulnerable\"}\n    params: {operator: contrast, theta: 0.5}\n  whole:\n    kind: merge\n    inputs: {secure: \"sft@target=secure\", vulnerable: \"sft@target=vulnerable\", model: tiny}\n    params: {operator: contrast, theta: 0.5, materialize: true}\n  with-adapter:\n    kind: generate\n    inputs: {model: tiny, adapter: m, prompts: pairs}\n    params: {prompts_file: val.jsonl, n: 1, temperature: 0, max_new_tokens: 6}\n  with-model:\n    kind: generate\n    inputs: {model: whole, prompts: pairs}\n    params: {prompts_file: val.jsonl, n: 1, temperature: 0, max_new_tokens: 6}\n";
    ws.write("t.yaml", manifest);
    let ev = ws.run_json(&["t.yaml"]);
    assert_eq!(
        (ev["d"]["status"].as_str(), ev["m"]["status"].as_str()),
        (Some("ran"), Some("ran"))
    );
    let d = secvec_artifacts_json(&ws.path().join("out/t/d/diagnostics.json"));
    let cosine = d["all"]["cosine"].as_f64().unwrap();
    assert!(cosine.abs() <= 1.0 && d["all"]["entries"].as_u64().unwrap() > 0, "{d}");
    let config = secvec_artifacts_json(&ws.path().join("out/t/m/adapter_config.json"));
    assert_eq!(
        (config["r"].as_i64(), config["lora_alpha"].as_f64()),
        (Some(8), Some(8.0))
    );
    // The steered adapter and the steered model written out whole generate the same tokens.
    let samples =
        |stage: &str| std::fs::read_to_string(ws.path().join(format!("out/t/{stage}/samples.jsonl"))).unwrap();
    assert!(ws.path().join("out/t/whole/model.safetensors").is_file());
    assert_eq!(samples("with-adapter"), samples("with-model"));

    // Contrast adds α τ_sec: without the secure adapter there is nothing to add.
    ws.write("no-secure.yaml", &manifest.replace("inputs: {secure: \"sft@target=secure\", vulnerable: \"sft@target=vulnerable\"}\n    params: {operator: contrast", "inputs: {vulnerable: \"sft@target=vulnerable\"}\n    params: {operator: contrast"));
    let out = ws.run(&["run", "no-secure.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("FAILED  m: α = 0.5 (contrast) adds the secure vector: bind the `secure` input"),
        "{said}"
    );

    ws.write("bad-theta.yaml", &manifest.replace("theta: 0.5", "theta: strong"));
    let out = ws.run(&["plan", "bad-theta.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad-theta.yaml:") && err.contains("`stages.m.params.theta`"),
        "{err}"
    );
}

fn secvec_artifacts_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn samples_of(ws: &Workspace, stage: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(ws.path().join(format!("out/m/{stage}/samples.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn memoised_prompts_give_the_samples_a_fresh_generation_gives() {
    // `b` shares its first prompt (same text, same place) with `a`; `c` is `b` with another
    // seed. Sampling at T 1 so that any difference in stream or model shows.
    let manifest = |with_a: bool| {
        let mut m = init_manifest("qwen2", 512);
        let stage = |name: &str, file: &str, seed: u64| {
            format!("  {name}:\n    kind: generate\n    inputs: {{model: tiny, prompts: {{path: {file}}}}}\n    params: {{n: 3, temperature: 1.0, top_p: 1.0, max_new_tokens: 6, seed: {seed}}}\n")
        };
        if with_a {
            m += &stage("a", "a.jsonl", 0);
        }
        m += &stage("b", "b.jsonl", 0);
        m += &stage("c", "b.jsonl", 1);
        m
    };
    let prompts = |second: &str| {
        format!("{{\"id\": \"p0\", \"prompt\": \"def read(path):\"}}\n{{\"id\": \"p1\", \"prompt\": \"{second}\"}}\n")
    };
    let memoised = Workspace::new();
    memoised.write("a.jsonl", &prompts("int main(void) {"));
    memoised.write("b.jsonl", &prompts("import os"));
    memoised.write("m.yaml", &manifest(true));
    memoised.run_json(&["m.yaml"]);
    let fresh = Workspace::new();
    fresh.write("b.jsonl", &prompts("import os"));
    fresh.write("m.yaml", &manifest(false));
    fresh.run_json(&["m.yaml"]);

    let (a, b) = (samples_of(&memoised, "a"), samples_of(&memoised, "b"));
    assert_eq!(b, samples_of(&fresh, "b"), "recalled samples equal generated ones");
    assert_eq!(a[..3], b[..3], "the shared prompt has the same samples in both files");
    assert_ne!(a[3..], b[3..]);
    assert_ne!(samples_of(&memoised, "c")[..3], b[..3], "another seed is another key");
}

#[test]
fn continuous_batching_gives_every_sample_the_same_tokens_whatever_the_batch_and_the_prompts_beside_it() {
    // Prompts of different lengths, so rows decode at different positions side by side.
    let prompts = [
        ("p0", "def read(path):"),
        ("p1", "import os"),
        ("p2", "int main(void) {\\n    char buf[16];"),
        ("p3", "#include <stdio.h>"),
        (
            "p4",
            "def query(db, name):\\n    cursor = db.cursor()\\n    cursor.execute(",
        ),
        ("p5", "x"),
    ];
    let file = |order: &[usize]| -> String {
        order
            .iter()
            .map(|&i| format!("{{\"id\": \"{}\", \"prompt\": \"{}\"}}\n", prompts[i].0, prompts[i].1))
            .collect()
    };
    // Each run in a workspace of its own: `batch_size` is a speed setting, so one workspace
    // would serve every run from the first one's cache.
    let run = |order: &[usize], batch: &str| {
        let ws = Workspace::new();
        ws.write("prompts.jsonl", &file(order));
        let mut m = "name: m\nstages:\n  pairs:\n    kind: pair\n    inputs: {data: {path: manifests/data/quickstart-pairs}}\n  tiny:\n    kind: init-model\n    inputs: {text: pairs}\n    params: {arch: qwen2, vocab_size: 512, hidden_size: 128, intermediate_size: 256, initializer_range: 0.3, seed: 3}\n".to_string();
        m += &format!("  gen:\n    kind: generate\n    inputs: {{model: tiny, prompts: {{path: prompts.jsonl}}}}\n    params: {{n: 4, temperature: 0.8, top_p: 0.95, max_new_tokens: 24, batch_size: {batch}}}\n");
        ws.write("m.yaml", &m);
        ws.run_json(&["m.yaml"]);
        samples_of(&ws, "gen")
            .into_iter()
            .map(|s| {
                let key = (
                    s["prompt_id"].as_str().unwrap().to_string(),
                    s["sample"].as_u64().unwrap(),
                );
                (key, (s["text"].clone(), s["generation"]["token_ids"].clone()))
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let all = [0, 1, 2, 3, 4, 5];
    let one_by_one = run(&all, "1");
    assert_eq!(one_by_one.len(), 24);
    let texts: std::collections::BTreeSet<_> = one_by_one.values().map(|(t, _)| t.to_string()).collect();
    assert!(texts.len() > 12, "T 0.8 should give varied samples: {texts:?}");
    assert_eq!(run(&all, "7"), one_by_one, "batch 7 against batch 1");
    assert_eq!(run(&all, "64"), one_by_one, "batch 64 against batch 1");
    // A KV budget of 1 MiB holds fewer rows than 64 of this model's caches.
    assert_eq!(
        run(&all, "64, kv_budget_mib: 1"),
        one_by_one,
        "batch 64 within a KV budget"
    );
    // Shuffled and cut: the prompts kept draw the samples they drew before.
    let shuffled = run(&[4, 2, 0, 5], "7");
    assert_eq!(shuffled.len(), 16);
    for (key, sample) in &shuffled {
        assert_eq!(sample, &one_by_one[key], "{key:?} shuffled and cut");
    }
    // Alone, with a batch that holds its samples and nothing else.
    let alone = run(&[3], "4");
    for (key, sample) in &alone {
        assert_eq!(sample, &one_by_one[key], "{key:?} alone");
    }
}
