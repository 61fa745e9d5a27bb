//! What can be checked of the GPU bundle without building it (`scripts/gpu-bundle.sh --dry-run`
//! builds and runs the whole): its overlay still fits the quickstart where `.models` is absent,
//! and run.sh's verdicts say FAILED where they must.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Workspace;

fn bundle_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/gpu-bundle")
        .join(name)
}

#[test]
fn the_bundle_overlay_plans_the_quickstart_without_the_fetched_models() {
    let ws = Workspace::new();
    std::fs::remove_file(ws.path().join(".models")).unwrap();
    let without = ws.run(&["plan", "manifests/quickstart.yaml"]);
    assert!(!without.status.success(), "the quickstart planned without .models");
    assert!(String::from_utf8_lossy(&without.stderr).contains(".models"));

    let overlay = bundle_file("overlay.yaml");
    let out = ws.run(&[
        "plan",
        "manifests/quickstart.yaml",
        "-o",
        overlay.to_str().unwrap(),
        "--set",
        "defaults.device=cpu",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for stage in ["steered-model", "latency-merged", "lpo@target=secure", "latency"] {
        assert!(stdout.contains(stage), "{stage} missing from the plan:\n{stdout}");
    }
    assert!(!stdout.contains("smollm2"), "{stdout}");
}

/// checks.py's verdict line for `args`, with `files` written in a scratch folder first.
fn verdict(args: &[&str], files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = Command::new("python3")
        .arg(bundle_file("checks.py"))
        .args(args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn run_sh_verdicts_fail_where_they_must() {
    let logits = |a: &str, b: &str, dtype: &str| {
        verdict(
            &["logits", "a.json", "b.json", dtype],
            &[
                ("a.json", &format!(r#"{{"logits": {a}}}"#)),
                ("b.json", &format!(r#"{{"logits": {b}}}"#)),
            ],
        )
    };
    assert!(logits("[1.0, 3.0, 2.0]", "[1.0, 3.0005, 2.0]", "f32").starts_with("ok\t"));
    // f32: 2e-3 apart is too far; another argmax fails in any dtype.
    assert!(logits("[1.0, 3.0, 2.0]", "[1.0, 3.002, 2.0]", "f32").starts_with("FAILED\t"));
    assert!(logits("[1.0, 3.0, 2.99]", "[1.0, 2.99, 3.0]", "bf16").starts_with("FAILED\t"));
    assert!(logits("[1.0, 3.0, 2.0]", "[1.0, 3.1, 2.0]", "bf16").starts_with("ok\t"));
    assert!(logits("[1.0, 3.0, 2.0]", "[1.0, 3.2, 2.0]", "bf16").starts_with("FAILED\t"));
    // A missing output is a failure, not a crash.
    let missing = verdict(&["logits", "none.json", "none.json", "f32"], &[]);
    assert!(missing.starts_with("FAILED\tno result"), "{missing}");

    let training = |loss: f64, adapter: f64| {
        let c = format!(
            r#"{{"losses": [2.0], "reference_losses": [2.0], "loss_difference": {loss}, "adapter_difference": {adapter}}}"#
        );
        verdict(&["training", "c.json", "1e-4"], &[("c.json", &c)])
    };
    assert!(training(5e-5, 5e-5).starts_with("ok\t"));
    assert!(training(5e-4, 5e-5).starts_with("FAILED\t"));
    assert!(training(5e-5, 5e-4).starts_with("FAILED\t"));

    let sample = r#"{"prompt_id": "p", "sample": 0, "text": "x", "generation": {"completion_tokens": 3}}"#;
    assert_eq!(
        verdict(&["samples", "s.jsonl"], &[("s.jsonl", sample)]),
        "ok\t1 completions, 3 new tokens"
    );
    assert!(verdict(&["samples", "s.jsonl"], &[("s.jsonl", "")]).starts_with("FAILED\t"));

    // NaN (serde_json writes it as null) or a wrong token count is a failure, never a pass.
    let nan = r#"{"losses": [null], "reference_losses": [2.0], "loss_difference": null, "adapter_difference": 0.0}"#;
    assert!(verdict(&["training", "c.json", "1e-4"], &[("c.json", nan)]).starts_with("FAILED\t"));
    assert!(logits("[1.0, 3.0, null]", "[1.0, 3.0, 2.0]", "f32").starts_with("FAILED\t"));
    let tokens = |n: usize| format!(r#"{{"new_tokens": {n}, "tokens_per_s": 10.0}}"#);
    let (full, short) = (tokens(1024), tokens(1000));
    assert!(verdict(
        &["throughput", "a.json", "b.json", "1024"],
        &[("a.json", &full), ("b.json", &full)]
    )
    .starts_with("ok\t"));
    assert!(verdict(
        &["throughput", "a.json", "b.json", "1024"],
        &[("a.json", &full), ("b.json", &short)]
    )
    .starts_with("FAILED\t"));
    // Latency measured on another device than asked is a failure.
    let latency = r#"{"rows": [{"mean_ms": 7.0, "std_ms": 0.1, "device": "cpu", "dtype": "f32"}]}"#;
    assert!(verdict(&["latency", "l.json", "cpu"], &[("l.json", latency)]).starts_with("ok\t"));
    assert!(verdict(&["latency", "l.json", "cuda"], &[("l.json", latency)]).starts_with("FAILED\t"));

    let rows = "5. quickstart\tok\tran\n10. later\tFAILED\tsee x.log\n1. logits\tok\tclose\n";
    let table = verdict(&["table", "r.tsv"], &[("r.tsv", rows)]);
    let order: Vec<&str> = table.lines().skip(2).map(|l| l.split(" | ").next().unwrap()).collect();
    assert_eq!(order, ["| 1. logits", "| 5. quickstart", "| 10. later"], "{table}");
}
