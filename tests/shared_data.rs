//! Tests on the shared datasets ($SECVEC_DATA, else ../shared/data); skipped when absent, except
//! under CI (`CI=true`), where missing data fails them.

mod common;

use std::path::PathBuf;

fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("SECVEC_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")));
    if dir.join("sven/data_train_val").is_dir() {
        Some(std::fs::canonicalize(dir).unwrap())
    } else {
        let why = "shared datasets not found ($SECVEC_DATA or ../shared/data)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{why}; under CI they are required"
        );
        eprintln!("notice: {why}; skipping");
        None
    }
}

#[test]
fn sven_pairs_match_the_paper_counts_and_every_recorded_change_checks_out() {
    let Some(data) = shared_data() else { return };
    let ws = common::Workspace::new();
    let out = ws
        .cmd(&["run", "manifests/sven-pairs.yaml", "--json"])
        .env("SECVEC_DATA", &data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = std::fs::read_to_string(ws.path().join("out/sven-pairs/report/report.md")).unwrap();
    assert!(report.contains("| python   | 380   | 380         |"), "{report}");
    assert!(report.contains("| total    | 803   | 803         |"), "{report}");
    assert!(
        report.contains("| total   | 720               | 83              |"),
        "{report}"
    );
    let train = std::fs::read_to_string(ws.path().join("out/sven-pairs/pairs/train.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(train.lines().next().unwrap()).unwrap();
    let spans = first["secure_spans"].as_array().unwrap();
    assert!(!spans.is_empty());
    assert!(first["prompt"].as_str().unwrap().ends_with("### Response:\n"));
}

#[test]
fn deepguard_split_has_the_papers_17_main_12_unseen_and_6_validation_scenarios() {
    let Some(data) = shared_data() else { return };
    let ws = common::Workspace::new();
    let out = ws
        .cmd(&["run", "manifests/deepguard-scenarios.yaml", "--json"])
        .env("SECVEC_DATA", &data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let count = |split: &str| {
        let path = ws
            .path()
            .join(format!("out/deepguard-scenarios/scenarios@split={split}/prompts.jsonl"));
        std::fs::read_to_string(path).unwrap().lines().count()
    };
    assert_eq!((count("main"), count("unseen"), count("validation")), (17, 12, 6));
    let validation = std::fs::read_to_string(
        ws.path()
            .join("out/deepguard-scenarios/scenarios@split=validation/prompts.jsonl"),
    )
    .unwrap();
    assert!(validation.contains("\"id\":\"cwe-125/2-c\""));
}

#[test]
fn the_harness_and_the_security_oracles_check_out_on_the_paper_scenarios() {
    let Some(data) = shared_data() else { return };
    if !common::bwrap_available() {
        return;
    }
    let ws = common::Workspace::new();
    let out = ws
        .cmd(&["run", "manifests/harness-check.yaml", "--json"])
        .env("SECVEC_DATA", &data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = |stage: &str| -> Vec<serde_json::Value> {
        let path = ws.path().join(format!("out/harness-check/{stage}/results.json"));
        let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        results["rows"].as_array().unwrap().clone()
    };
    let references = rows("reference-scores");
    assert_eq!(references.len(), 28, "28 of the 35 scenarios ship a reference solution");
    assert!(references.iter().all(|r| r["valid"] == 1), "every reference parses");
    let count = |key: &str, want: i64| references.iter().filter(|r| r[key] == want).count();
    // The 11 that fail are the references' own defects (README, "Reference solutions").
    assert_eq!(count("functional", 1), 17, "references functional");
    assert_eq!(
        (count("secure", 1), count("secure", 0)),
        (22, 6),
        "references judged secure, flagged"
    );
    let reference = |id: &str| references.iter().find(|r| r["scenario"] == id).unwrap().clone();
    // Its test fetched a fixture from its authors' home directory until the copy was fixed.
    assert_eq!(reference("cwe-190/2-c")["functional"], 1);
    assert_eq!(reference("cwe-119/0-c")["functional"], 1);
    // A reference that reads past its array (id_sequence[3] of 3) is rightly judged vulnerable.
    assert_eq!(reference("cwe-125/0-c")["secure"], 0);
    assert_eq!(reference("cwe-119/0-c")["oracle"], "open");

    // The project's own completions for the 29 paper scenarios: every secure one passes its
    // test and is judged secure, every vulnerable one passes its test and is flagged.
    for (stage, want_secure) in [("secure-scores", 1), ("vulnerable-scores", 0)] {
        let rows = rows(stage);
        assert_eq!(rows.len(), 29, "{stage}");
        for r in &rows {
            assert_eq!(r["functional"], 1, "{stage}: {r}");
            assert_eq!(r["secure"], want_secure, "{stage}: {r}");
            assert!(r["sec-pass@1"].is_number() && r["sven_sr"].is_number(), "{stage}: {r}");
        }
    }
}

/// Every shipped manifest, alone or with an overlay, that needs nothing this machine lacks (no
/// GPU-sized model, no API key) plans: its inputs resolve and every variant finds inputs whose
/// labels agree. A stage added to a long manifest fails here, not hours into a run.
#[test]
fn every_shipped_manifest_that_runs_on_cpu_plans() {
    let Some(data) = shared_data() else { return };
    if !common::model_available("smollm2") || !common::model_available("qwen2.5-coder-0.5b") {
        return;
    }
    let ws = common::Workspace::new();
    let runnable: &[(&str, &[&str])] = &[
        ("quickstart", &[]),
        ("quickstart", &["python-only"]),
        ("sven-pairs", &[]),
        ("deepguard-scenarios", &[]),
        ("safecoder", &[]),
        ("harness-check", &[]),
        ("harness-check", &["codeguardplus"]),
        ("secveccoder", &["secveccoder/smollm2-cpu"]),
        ("secveccoder", &["secveccoder/qwen-0.5b-cpu"]),
        ("rescue", &["rescue/smollm2-cpu"]),
        ("rescue", &["rescue/qwen-0.5b-cpu"]),
        // Served generators: planning asks no server, but needs the key's variable set.
        ("rescue", &["rescue/gpt-4o-mini"]),
        ("rescue", &["rescue/deepseek-coder-v2-lite-vllm"]),
        ("positive-control", &["positive-control/smollm2"]),
        ("positive-control", &["positive-control/qwen-0.5b"]),
        (
            "positive-control",
            &["positive-control/qwen-0.5b", "positive-control/vllm-final"],
        ),
        ("served-generation", &[]),
    ];
    for (manifest, overlays) in runnable {
        let manifest = format!("manifests/{manifest}.yaml");
        let mut args = vec!["plan".to_string(), manifest];
        for o in *overlays {
            args.extend(["-o".to_string(), format!("manifests/overlays/{o}.yaml")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ws
            .cmd(&args)
            .env("SECVEC_DATA", &data)
            .env("OPENAI_API_KEY", "unused")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("would run"), "{args:?}");
    }
}
