//! End-to-end behaviour of the engine through the `secvec` binary.

mod common;

use common::{statuses, Workspace};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn schema_files_are_current() {
    let ws = Workspace::new();
    for (file, args) in [("manifest", &["schema"][..]), ("overlay", &["schema", "--overlay"])] {
        let out = ws.run(args);
        assert!(out.status.success());
        let path = format!("{}/schema/{file}.schema.json", env!("CARGO_MANIFEST_DIR"));
        assert_eq!(
            stdout(&out),
            std::fs::read_to_string(&path).unwrap(),
            "schema/{file}.schema.json is stale: run `secvec {} > schema/{file}.schema.json`",
            args.join(" ")
        );
    }
}

/// Every error an editor would show for `yaml` under the schema `secvec {args}` prints, as
/// `path: message`.
fn schema_errors(ws: &Workspace, args: &[&str], yaml: &str) -> Vec<String> {
    let schema: serde_json::Value = serde_json::from_slice(&ws.run(args).stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let doc: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
    validator
        .iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn schemas_accept_every_shipped_manifest_and_overlay_and_name_the_wrong_field() {
    let ws = Workspace::new();
    let yaml_files = |dir: &str| -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        let mut todo = vec![ws.path().join(dir)];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                } else if p.extension().is_some_and(|x| x == "yaml") {
                    found.push(p);
                }
            }
        }
        found
    };
    let manifests: Vec<_> = yaml_files("manifests")
        .into_iter()
        .filter(|p| p.parent() == Some(&ws.path().join("manifests")))
        .collect();
    let overlays = yaml_files("manifests/overlays");
    assert!(
        manifests.len() >= 5 && overlays.len() >= 10,
        "{manifests:?} {overlays:?}"
    );
    for (files, args) in [(&manifests, &["schema"][..]), (&overlays, &["schema", "--overlay"])] {
        for f in files {
            let errors = schema_errors(&ws, args, &std::fs::read_to_string(f).unwrap());
            assert!(errors.is_empty(), "{}: {errors:#?}", f.display());
        }
    }
    // One wrong param: the error is that param, not "matches none of the kinds".
    let wrong = "name: x\nstages:\n  pairs:\n    kind: pair\n    inputs: {data: {path: d}}\n    params: {cwes: 7}\n";
    let errors = schema_errors(&ws, &["schema"], wrong);
    assert_eq!(errors, ["/stages/pairs/params/cwes: 7 is not of type \"array\""]);
    let typo = "name: x\nstages:\n  gen:\n    kind: generate\n    inputs: {model: m, prompts: p}\n    params: {temperatur: 0.2}\n";
    let errors = schema_errors(&ws, &["schema"], typo);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("/stages/gen/params: Additional properties are not allowed ('temperatur'"),
        "{errors:?}"
    );
    let missing_input = "name: x\nstages:\n  gen:\n    kind: generate\n    inputs: {model: m}\n";
    let errors = schema_errors(&ws, &["schema"], missing_input);
    assert_eq!(errors, ["/stages/gen/inputs: \"prompts\" is a required property"]);
    // An overlay: partial stages, `null` deletes, params typed when it names the kind.
    let overlay = "name: y\nstages:\n  pairs: {params: {cwes: [cwe-089]}}\n  report: null\n  extra:\n    kind: pair\n    params: {languages: null}\n";
    assert_eq!(
        schema_errors(&ws, &["schema", "--overlay"], overlay),
        Vec::<String>::new()
    );
    let overlay_typo = "stages:\n  gen:\n    kind: generate\n    params: {temperatur: 0.2}\n";
    let errors = schema_errors(&ws, &["schema", "--overlay"], overlay_typo);
    assert!(
        errors.len() == 1 && errors[0].starts_with("/stages/gen/params: Additional properties are not allowed"),
        "{errors:?}"
    );
}

#[test]
fn quickstart_runs_then_is_entirely_cached() {
    let ws = Workspace::new();
    let first = ws.run_json(&["manifests/quickstart.yaml"]);
    assert!(statuses(&first).iter().all(|(_, s)| s == "ran"), "{first:?}");
    assert_eq!(first.len(), 60);
    // LPO does what it is for: on the held-out pairs, the secure adapter raises the margin
    // s(c+) - s(c-) and the vulnerable one lowers it.
    for (target, sign) in [("secure", 1.0), ("vulnerable", -1.0)] {
        let results: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                ws.path()
                    .join(format!("out/quickstart/lpo@target={target}/results.json")),
            )
            .unwrap(),
        )
        .unwrap();
        let row = &results["rows"][0];
        let change = row["lpo_margin_after"].as_f64().unwrap() - row["lpo_margin_before"].as_f64().unwrap();
        assert!(sign * change > 0.0, "{target}: {row}");
        // The `margin` stage measures the same held-out pairs with the adapter merged into the
        // model: the mean the training reported, and an interval around it.
        let margins: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                ws.path()
                    .join(format!("out/quickstart/margins@target={target}/results.json")),
            )
            .unwrap(),
        )
        .unwrap();
        let set = &margins["sets"][0];
        let (lo, mean, hi) = (
            set["margin_lo"].as_f64().unwrap(),
            set["margin"].as_f64().unwrap(),
            set["margin_hi"].as_f64().unwrap(),
        );
        assert!(
            (mean - row["lpo_margin_after"].as_f64().unwrap()).abs() < 1e-4,
            "{set} vs {row}"
        );
        assert!(lo < mean && mean < hi, "{set}");
        assert_eq!(
            set["pairs"].as_u64().unwrap() as usize,
            margins["rows"].as_array().unwrap().len()
        );
    }
    // The oracles judge one of each known secure/vulnerable pair secure.
    let known: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ws.path().join("out/quickstart/known-scores/results.json")).unwrap(),
    )
    .unwrap();
    for row in known["rows"].as_array().unwrap() {
        assert_eq!(
            (&row["n"], &row["functional"], &row["secure"]),
            (&2.into(), &2.into(), &1.into()),
            "{row}"
        );
    }
    // The README's main command ends by printing these reports.
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/quickstart.sh")).unwrap();
    let printed: Vec<&str> = script
        .split_whitespace()
        .map(|w| w.trim_matches('"'))
        .filter(|w| w.starts_with("out/quickstart/") && w.ends_with(".md"))
        .collect();
    assert_eq!(printed.len(), 8, "{printed:?}");
    for report in printed {
        assert!(
            ws.path().join(report).is_file(),
            "scripts/quickstart.sh prints {report}, which the run did not write"
        );
    }
    let second = ws.run_json(&["manifests/quickstart.yaml"]);
    assert!(statuses(&second).iter().all(|(_, s)| s == "cached"), "{second:?}");
    for (stage, e) in &first {
        assert_eq!(e["output"], second[stage]["output"], "{stage}");
    }
    let report = std::fs::read_to_string(ws.path().join("out/quickstart/report/report.md")).unwrap();
    insta::assert_snapshot!("quickstart_report", report);
    let sweep = std::fs::read_to_string(ws.path().join("out/quickstart/language-report/report.md")).unwrap();
    insta::assert_snapshot!("quickstart_language_report", sweep);
    // Params that change only speed are not in the key.
    let faster = ws.run_json(&[
        "manifests/quickstart.yaml",
        "--set",
        "stages.known-scores.params.jobs=1",
        "--set",
        "stages.samples.params.batch_size=1",
    ]);
    assert!(statuses(&faster).iter().all(|(_, s)| s == "cached"), "{faster:?}");
}

#[test]
fn plan_lists_matrix_variants_and_says_why() {
    let ws = Workspace::new();
    let fresh = ws.run(&["plan", "manifests/quickstart.yaml"]);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    assert!(!ws.path().join(".secvec").exists(), "plan must not create a cache");
    insta::assert_snapshot!("plan_fresh", stdout(&fresh));
    ws.run_json(&["manifests/quickstart.yaml"]);
    let changed = ws.run(&[
        "plan",
        "manifests/quickstart.yaml",
        "--set",
        "stages.pairs.params.cwes=[cwe-089]",
    ]);
    insta::assert_snapshot!("plan_after_param_change", stdout(&changed));
}

#[test]
fn changing_one_param_reruns_exactly_that_stage_and_its_dependents() {
    let ws = Workspace::new();
    ws.run_json(&["manifests/quickstart.yaml"]);
    let ev = ws.run_json(&[
        "manifests/quickstart.yaml",
        "--set",
        "stages.pairs.params.cwes=[cwe-089]",
    ]);
    let want = [
        ("diagnose-lpo", "ran"),
        ("diagnose-sft", "ran"),
        ("kb-examples", "cached"),
        ("kb-report", "cached"),
        ("kb-summaries", "cached"),
        ("known-scores", "cached"),
        ("language-report", "cached"),
        ("latency", "ran"),
        ("lpo-samples@target=secure", "ran"),
        ("lpo-samples@target=vulnerable", "ran"),
        ("lpo@target=secure", "ran"),
        ("lpo@target=vulnerable", "ran"),
        ("margin-shifts@target=secure", "ran"),
        ("margin-shifts@target=vulnerable", "ran"),
        ("margins-base", "ran"),
        ("margins@target=secure", "ran"),
        ("margins@target=vulnerable", "ran"),
        ("model-report", "ran"),
        ("oracle-report", "cached"),
        ("pairs", "ran"),
        ("pairs-by-language@languages=c", "cached"),
        ("pairs-by-language@languages=python", "cached"),
        ("rag-prompts@method=rescue", "cached"),
        ("rag-samples@method=rescue", "cached"),
        ("rag-scores@method=rescue", "cached"),
        ("report", "ran"),
        ("rescue-report", "cached"),
        ("retrieved@method=rescue", "cached"),
        ("samples", "ran"),
        ("scenario-samples", "ran"),
        ("scenarios", "cached"),
        ("scores", "ran"),
        ("sft@target=secure", "ran"),
        ("sft@target=vulnerable", "ran"),
        ("smollm2", "cached"),
        ("smollm2-report@method=llm-alone", "cached"),
        ("smollm2-samples@method=llm-alone", "cached"),
        ("smollm2-scores@method=llm-alone", "cached"),
        ("steered-margins@operator=contrast,theta=0.5", "ran"),
        ("steered-margins@operator=contrast,theta=1.5", "ran"),
        ("steered-margins@operator=negation,theta=0.5", "ran"),
        ("steered-margins@operator=negation,theta=1.5", "ran"),
        ("steered-margins@operator=secure-anchored,theta=0.5", "ran"),
        ("steered-margins@operator=secure-anchored,theta=1.5", "ran"),
        ("steered-samples@operator=contrast,theta=0.5", "ran"),
        ("steered-samples@operator=contrast,theta=1.5", "ran"),
        ("steered-samples@operator=negation,theta=0.5", "ran"),
        ("steered-samples@operator=negation,theta=1.5", "ran"),
        ("steered-samples@operator=secure-anchored,theta=0.5", "ran"),
        ("steered-samples@operator=secure-anchored,theta=1.5", "ran"),
        ("steered@operator=contrast,theta=0.5", "ran"),
        ("steered@operator=contrast,theta=1.5", "ran"),
        ("steered@operator=negation,theta=0.5", "ran"),
        ("steered@operator=negation,theta=1.5", "ran"),
        ("steered@operator=secure-anchored,theta=0.5", "ran"),
        ("steered@operator=secure-anchored,theta=1.5", "ran"),
        ("steering-trend", "ran"),
        ("task-vector-report", "ran"),
        ("tiny-model", "ran"),
        ("training-report", "ran"),
    ];
    assert_eq!(statuses(&ev), want.map(|(a, b)| (a.to_string(), b.to_string())));
}

#[test]
fn identical_upstream_output_does_not_rerun_dependents() {
    let ws = Workspace::new();
    let before = ws.run_json(&["manifests/quickstart.yaml"]);
    // Every quickstart pair has a description, so the fallback instruction is never used:
    // `pairs` reruns (its params changed) but writes the same bytes.
    let ev = ws.run_json(&[
        "manifests/quickstart.yaml",
        "--set",
        "stages.pairs.params.instruction=Write {func_name}.",
    ]);
    assert_eq!(ev["pairs"]["status"], "ran");
    assert_eq!(ev["pairs"]["output"], before["pairs"]["output"]);
    assert_eq!(ev["report"]["status"], "cached");
    assert_eq!(ev["tiny-model"]["status"], "cached");
}

#[test]
fn overlays_merge_delete_and_rename_the_run() {
    let ws = Workspace::new();
    let ev = ws.run_json(&["manifests/quickstart.yaml", "-o", "manifests/overlays/python-only.yaml"]);
    assert_eq!(
        ev.keys().collect::<Vec<_>>(),
        [
            "diagnose-lpo",
            "diagnose-sft",
            "kb-examples",
            "kb-report",
            "kb-summaries",
            "known-scores",
            "latency",
            "lpo-samples@target=secure",
            "lpo-samples@target=vulnerable",
            "lpo@target=secure",
            "lpo@target=vulnerable",
            "margin-shifts@target=secure",
            "margin-shifts@target=vulnerable",
            "margins-base",
            "margins@target=secure",
            "margins@target=vulnerable",
            "model-report",
            "oracle-report",
            "pairs",
            "rag-prompts@method=rescue",
            "rag-samples@method=rescue",
            "rag-scores@method=rescue",
            "report",
            "rescue-report",
            "retrieved@method=rescue",
            "samples",
            "scenario-samples",
            "scenarios",
            "scores",
            "sft@target=secure",
            "sft@target=vulnerable",
            "smollm2",
            "smollm2-report@method=llm-alone",
            "smollm2-samples@method=llm-alone",
            "smollm2-scores@method=llm-alone",
            "steered-margins@operator=contrast,theta=0.5",
            "steered-margins@operator=contrast,theta=1.5",
            "steered-margins@operator=negation,theta=0.5",
            "steered-margins@operator=negation,theta=1.5",
            "steered-margins@operator=secure-anchored,theta=0.5",
            "steered-margins@operator=secure-anchored,theta=1.5",
            "steered-samples@operator=contrast,theta=0.5",
            "steered-samples@operator=contrast,theta=1.5",
            "steered-samples@operator=negation,theta=0.5",
            "steered-samples@operator=negation,theta=1.5",
            "steered-samples@operator=secure-anchored,theta=0.5",
            "steered-samples@operator=secure-anchored,theta=1.5",
            "steered@operator=contrast,theta=0.5",
            "steered@operator=contrast,theta=1.5",
            "steered@operator=negation,theta=0.5",
            "steered@operator=negation,theta=1.5",
            "steered@operator=secure-anchored,theta=0.5",
            "steered@operator=secure-anchored,theta=1.5",
            "steering-trend",
            "task-vector-report",
            "tiny-model",
            "training-report"
        ]
    );
    let report = std::fs::read_to_string(ws.path().join("out/quickstart-python/report/report.md")).unwrap();
    assert!(
        report.contains("| train | python   | 10    | 10          |"),
        "{report}"
    );
    assert!(
        report.contains("| train | c        | —     | 9           |"),
        "only the reference has C rows: {report}"
    );
}

#[test]
fn only_runs_the_named_stage_and_its_inputs() {
    let ws = Workspace::new();
    let ev = ws.run_json(&["manifests/quickstart.yaml", "--only", "report"]);
    assert_eq!(ev.keys().collect::<Vec<_>>(), ["pairs", "report"]);
    ws.run_json(&["manifests/quickstart.yaml", "--only", "pairs-by-language"]);
    let forced = ws.run_json(&[
        "manifests/quickstart.yaml",
        "--only",
        "pairs-by-language",
        "--force",
        "pairs-by-language@languages=c",
    ]);
    assert_eq!(
        statuses(&forced),
        [
            ("pairs-by-language@languages=c".to_string(), "ran".to_string()),
            ("pairs-by-language@languages=python".into(), "cached".into())
        ]
    );
}

#[test]
fn a_failing_stage_stops_only_its_descendants() {
    let ws = Workspace::new();
    ws.write("bad/train/x.jsonl", "{\"func_src_before\": \"a\"}\nnot json\n");
    ws.write("bad/val/x.jsonl", "");
    ws.write(
        "m.yaml",
        "name: fail\nstages:\n  good:\n    kind: pair\n    inputs: {data: {path: manifests/data/quickstart-pairs}}\n  bad:\n    kind: pair\n    inputs: {data: {path: bad}}\n  r:\n    kind: report\n    inputs: {results: bad}\n    params: {title: t, tables: []}\n",
    );
    let out = ws.run(&["run", "m.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let ev = common::events(&out.stdout);
    assert_eq!(
        statuses(&ev),
        [
            ("bad".into(), "failed".into()),
            ("good".into(), "ran".into()),
            ("r".into(), "skipped".into())
        ]
    );
    let err = ev["bad"]["error"].as_str().unwrap();
    assert!(
        err.contains("2 malformed line(s)")
            && err.contains("x.jsonl:1: not a pair record")
            && err.contains("x.jsonl:2:"),
        "{err}"
    );
    assert!(stderr(&out).contains("1 stage(s) failed: bad"));
    let again = ws.run(&["run", "m.yaml", "--json"]);
    assert_eq!(common::events(&again.stdout)["good"]["status"], "cached");
}

#[test]
fn bad_manifests_fail_with_a_location_and_write_nothing() {
    let ws = Workspace::new();
    let base = "name: bad\nstages:\n  pairs:\n    kind: pair\n    inputs:\n      data: {path: manifests/data/quickstart-pairs}\n";
    let cases: &[(&str, String, &[&str])] = &[
        ("yaml_syntax", "name: bad\nstages: [\n".into(), &[]),
        ("unknown_kind", format!("{base}  r:\n    kind: reprot\n"), &[]),
        ("unknown_field", format!("{base}    params:\n      languagez: [python]\n"), &[]),
        ("wrong_type", format!("{base}    params:\n      cwes: 7\n"), &[]),
        ("unknown_manifest_field", format!("{base}extra: 1\n"), &[]),
        (
            "cycle",
            "name: bad\nstages:\n  a:\n    kind: report\n    inputs: {results: b}\n    params: {title: x, tables: []}\n  b:\n    kind: report\n    inputs: {results: a}\n    params: {title: x, tables: []}\n".into(),
            &[],
        ),
        ("missing_input", format!("{base}  r:\n    kind: report\n    inputs: {{results: pair}}\n    params: {{title: x, tables: []}}\n"), &[]),
        ("type_mismatch", format!("{base}  r:\n    kind: report\n    inputs: {{results: pairs}}\n    params: {{title: x, tables: []}}\n  p2:\n    kind: pair\n    inputs: {{data: r}}\n"), &[]),
        ("missing_path", "name: bad\nstages:\n  pairs:\n    kind: pair\n    inputs:\n      data: {path: nowhere}\n".into(), &[]),
        ("bad_overlay_path", base.into(), &["-o", "missing-overlay.yaml"]),
        ("empty_manifest", String::new(), &[]),
        ("name_null", base.replace("name: bad", "name: null"), &[]),
        ("overlay_name_null", base.into(), &["-o", "name-null.yaml"]),
        ("empty_overlay", base.into(), &["-o", "empty-overlay.yaml"]),
        ("overlay_misspelt_stage", base.into(), &["-o", "misspelt.yaml"]),
        (
            "overlay_deletes_a_used_stage",
            format!("{base}  r:\n    kind: report\n    inputs: {{results: pairs}}\n    params: {{title: x, tables: []}}\n"),
            &["-o", "delete-pairs.yaml"],
        ),
        ("bad_set_syntax", base.into(), &["--set", "stages.pairs.params.cwes"]),
        ("bad_set_stage", base.into(), &["--set", "stages.pair.params.cwes=[]"]),
        ("bad_set_value_type", base.into(), &["--set", "stages.pairs.params.languages=[rust]"]),
        ("duplicate_stage", format!("{base}  pairs:\n    kind: pair\n"), &[]),
        // Names that would put outputs outside out/ and the cache.
        ("dots_name", base.replace("name: bad", "name: .."), &[]),
        ("matrix_value_path", format!("{base}    matrix:\n      cwes: [[cwe-089], [a/../../x]]\n"), &[]),
        ("label_key_path", format!("{base}    labels: {{\"a/../../x\": y}}\n"), &[]),
        // Found at plan time, before any stage upstream runs.
        (
            "report_misspelt_column",
            format!("{base}  r:\n    kind: report\n    inputs: {{results: pairs}}\n    params:\n      title: x\n      tables:\n        - title: Pairs\n          rows: [language]\n          columns: [pairs, identical_pair]\n"),
            &[],
        ),
        (
            "malformed_stage_ref",
            format!("{base}  r:\n    kind: report\n    inputs: {{results: \"pairs@languages\"}}\n    params: {{title: x, tables: []}}\n"),
            &[],
        ),
        (
            "set_a_matrixed_key",
            format!("{base}    matrix:\n      cwes: [[cwe-089], [cwe-022]]\n"),
            &["--set", "stages.pairs.params.cwes=[cwe-079]"],
        ),
        ("set_a_list_index_past_the_end", format!("{base}    params: {{cwes: [cwe-089]}}\n"), &["--set", "stages.pairs.params.cwes[3]=cwe-079"]),
    ];
    ws.write("name-null.yaml", "name: null\n");
    ws.write("empty-overlay.yaml", "");
    ws.write("misspelt.yaml", "stages:\n  pair:\n    params: {cwes: [cwe-089]}\n");
    ws.write("delete-pairs.yaml", "stages:\n  pairs: null\n");
    for (name, text, extra) in cases {
        ws.write("bad.yaml", text);
        let mut args = vec!["run", "bad.yaml"];
        args.extend_from_slice(extra);
        let out = ws.run(&args);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(!ws.path().join(".secvec").exists(), "{name}: the cache was touched");
        insta::assert_snapshot!(format!("bad_manifest_{name}"), stderr(&out));
    }
}

#[test]
fn sampling_out_of_range_is_refused_at_plan() {
    let ws = Workspace::new();
    let out = ws.run(&[
        "plan",
        "manifests/quickstart.yaml",
        "--set",
        "stages.samples.params.top_p=1.5",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--set stages.samples.params.top_p=1.5") && err.contains("`top_p`: 1.5 is not a share"),
        "{err}"
    );
    assert!(!ws.path().join(".secvec").exists(), "the cache was touched");
}

#[test]
fn verify_detects_corruption_and_gc_removes_what_no_manifest_uses() {
    let ws = Workspace::new();
    let ev = ws.run_json(&["manifests/quickstart.yaml"]);
    ws.run_json(&["manifests/quickstart.yaml", "-o", "manifests/overlays/python-only.yaml"]);
    assert!(ws.run(&["cache", "verify"]).status.success());

    let dangling = |ws: &Workspace| -> Vec<String> {
        let dir = ws.path().join("out/quickstart-python");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_symlink() && !p.exists())
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    };
    let dry = ws.run(&["cache", "gc", "manifests/quickstart.yaml", "--dry-run"]);
    let listed = stdout(&dry);
    assert!(listed.contains("would remove 41 entries and 38 artifacts"), "{listed}");
    let stages = listed
        .lines()
        .find_map(|l| l.strip_prefix("would remove the results of 41 stage(s) of quickstart-python: "))
        .unwrap_or_else(|| panic!("no stage listing for quickstart-python: {listed}"));
    assert!(stages.split(", ").any(|s| s == "sft@target=secure"), "{stages}");
    assert!(!listed.contains("stage(s) of quickstart:"), "{listed}");
    let would_dangle = listed
        .lines()
        .filter(|l| l.starts_with("would remove the dangling link "))
        .count();
    assert!(would_dangle > 0, "{listed}");
    assert!(dangling(&ws).is_empty(), "a dry run removed outputs");

    let gc = ws.run(&["cache", "gc", "manifests/quickstart.yaml"]);
    assert!(
        stdout(&gc).contains("removed 41 entries and 38 artifacts"),
        "{}",
        stdout(&gc)
    );
    let removed_links = stdout(&gc)
        .lines()
        .filter(|l| l.starts_with("removed the dangling link "))
        .count();
    assert_eq!(removed_links, would_dangle, "{}", stdout(&gc));
    assert_eq!(dangling(&ws), Vec::<String>::new());
    assert!(
        ws.path().join("out/quickstart/pairs").exists(),
        "gc removed a kept stage's link"
    );
    let plan = ws.run(&["plan", "manifests/quickstart.yaml"]);
    assert!(stdout(&plan).contains("0 of 60 stages would run"), "{}", stdout(&plan));

    let artifact = ws
        .path()
        .join(".secvec/store")
        .join(ev["pairs"]["output"].as_str().unwrap());
    let file = artifact.join("train.jsonl");
    let mut perm = std::fs::metadata(&file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
    std::fs::set_permissions(&file, perm).unwrap();
    std::fs::write(&file, "tampered\n").unwrap();
    let verify = ws.run(&["cache", "verify"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(
        stdout(&verify).contains("artifact content hashes to"),
        "{}",
        stdout(&verify)
    );
    assert!(ws.run(&["cache", "verify", "--fix"]).status.success());
    let rerun = ws.run_json(&["manifests/quickstart.yaml"]);
    assert_eq!(rerun["pairs"]["status"], "ran");
    assert_eq!(rerun["pairs"]["output"], ev["pairs"]["output"]);
    assert!(stdout(&ws.run(&["cache", "verify"])).contains(" 0 problem(s)"));
}

#[test]
fn show_finds_stages_and_variants_and_says_why_one_has_no_outputs() {
    let ws = Workspace::new();
    ws.write("bad/train/x.jsonl", "not json\n");
    ws.write("bad/val/x.jsonl", "");
    ws.write(
        "manifests/shown.yaml",
        &format!(
            "{}  broken:\n    kind: pair\n    inputs: {{data: {{path: ../bad}}}}\n  broken-report:\n    kind: report\n    inputs: {{results: broken}}\n    params: {{title: t, tables: []}}\n",
            PAIRS_BY_LANGUAGE.replace("name: runs-check", "name: shown")
        ),
    );
    let run = ws.run(&["run", "manifests/shown.yaml"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let filters = vec![
        (r"\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{4}", "[RUN]"),
        (r"[0-9a-f]{64}", "[HASH]"),
        (r"\b[0-9a-f]{12}\b", "[SHORT]"),
        (
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ for \d+\.\d\ds on .*, secvec",
            "[WHEN AND WHERE], secvec",
        ),
        (r"/\S*/\.secvec/store/", "[CACHE]/store/"),
        (r" +\d+\.\d\ds ", " [S]s "),
    ];
    let show = |args: &[&str]| {
        let mut full = vec!["show"];
        full.extend_from_slice(args);
        ws.run(&full)
    };
    let one = show(&["pairs@languages=c"]);
    assert!(one.status.success(), "{}", stderr(&one));
    let variants = show(&["pairs"]);
    assert!(variants.status.success(), "{}", stderr(&variants));
    insta::with_settings!({filters => filters.clone()}, {
        insta::assert_snapshot!("show_one", stdout(&one));
        insta::assert_snapshot!("show_variants", stdout(&variants));
        for (name, args) in [
            ("show_failed", &["broken"][..]),
            ("show_skipped", &["broken-report"]),
            ("show_unknown_stage", &["pairz"]),
            ("show_unknown_manifest", &["pairs", "--manifest", "shown.yaml"]),
        ] {
            let out = show(args);
            assert_eq!(out.status.code(), Some(2), "{name}: {}", stdout(&out));
            insta::assert_snapshot!(name, stderr(&out));
        }
    });
    let json: serde_json::Value = serde_json::from_slice(&show(&["pairs@languages=c", "--json"]).stdout).unwrap();
    assert_eq!(json["outputs"], "out/shown/pairs@languages=c");
    assert_eq!(json["record"]["provenance"]["kind"], "pair");
    assert_eq!(
        json["record"]["provenance"]["params"]["languages"],
        serde_json::json!(["c"])
    );
    assert_eq!(json["record"]["provenance"]["inputs"][0]["slot"], "data");
    let listed: Vec<String> = std::fs::read_dir(ws.path().join("out/shown/pairs@languages=c"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(listed.contains(&"train.jsonl".to_string()), "{listed:?}");
    let all: serde_json::Value = serde_json::from_slice(&show(&["pairs", "--json"]).stdout).unwrap();
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
}

#[test]
fn an_input_picks_matrix_variants_by_value() {
    let ws = Workspace::new();
    let table = "params: {title: t, tables: [{title: x, rows: [language], columns: [pairs], aggregate: sum}]}";
    ws.write(
        "sel.yaml",
        &format!(
            "name: sel\nstages:\n  p:\n    kind: pair\n    matrix: {{languages: [[python], [c]]}}\n    inputs: {{data: {{path: manifests/data/quickstart-pairs}}}}\n  both:\n    kind: report\n    inputs: {{results: [\"p@languages=python\", \"p@languages=c\"]}}\n    {table}\n  one:\n    kind: report\n    inputs: {{results: \"p@languages=c\"}}\n    {table}\n"
        ),
    );
    let ev = ws.run_json(&["sel.yaml"]);
    let names: Vec<String> = statuses(&ev).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["both", "one", "p@languages=c", "p@languages=python"], "{ev:?}");
    let report = |stage: &str| std::fs::read_to_string(ws.path().join(format!("out/sel/{stage}/report.md"))).unwrap();
    assert!(
        report("both").contains("python") && report("both").contains("| c "),
        "{}",
        report("both")
    );
    assert!(
        !report("one").contains("python") && report("one").contains("| c "),
        "{}",
        report("one")
    );

    ws.write(
        "bad.yaml",
        &std::fs::read_to_string(ws.path().join("sel.yaml"))
            .unwrap()
            .replace("p@languages=c\"}", "p@languages=rust\"}"),
    );
    let out = ws.run(&["plan", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "stage `one`: input `results`: no variant of `p` matches `p@languages=rust`; its variants are p@languages=python, p@languages=c"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sources_bind_by_name_and_labels_reach_reports() {
    let ws = Workspace::new();
    let table = "params: {title: t, tables: [{title: x, rows: [origin], columns: [pairs], aggregate: sum}]}";
    ws.write(
        "src.yaml",
        &format!(
            "name: src\nsources:\n  data: manifests/data/quickstart-pairs\nstages:\n  p:\n    kind: pair\n    labels: {{origin: shipped}}\n    inputs: {{data: data}}\n  r:\n    kind: report\n    inputs: {{results: p}}\n    {table}\n"
        ),
    );
    let ev = ws.run_json(&["src.yaml"]);
    let names: Vec<String> = statuses(&ev).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["p@origin=shipped", "r@origin=shipped"],
        "labels are carried like matrix values: {ev:?}"
    );
    let report = std::fs::read_to_string(ws.path().join("out/src/r@origin=shipped/report.md")).unwrap();
    assert!(report.contains("| shipped | 25 "), "{report}");

    // Params for every stage of a kind, from one place; a stage's own params still win.
    let ev = ws.run_json(&["src.yaml", "--set", "defaults.kinds.pair.languages=[c]"]);
    assert_eq!(ev["p@origin=shipped"]["status"], "ran");
    let c_only = std::fs::read_to_string(ws.path().join("out/src/r@origin=shipped/report.md")).unwrap();
    assert!(
        c_only.contains("| shipped |") && !c_only.contains("| shipped | 25 "),
        "{c_only}"
    );
    let out = ws.run(&["plan", "src.yaml", "--set", "defaults.kinds.pairs.languages=[c]"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("defaults for unknown kind `pairs` (did you mean `pair`?)"),
        "{}",
        stderr(&out)
    );

    // Swapping the source on the command line re-reads it; a missing one is named.
    let out = ws.run(&["plan", "src.yaml", "--set", "sources.data=nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nowhere does not exist"), "{}", stderr(&out));

    ws.write(
        "clash.yaml",
        &std::fs::read_to_string(ws.path().join("src.yaml"))
            .unwrap()
            .replace("  data: manifests", "  p: manifests"),
    );
    let out = ws.run(&["plan", "clash.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`p` is both a source and a stage"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_reader_that_goes_away_is_not_a_crash() {
    let ws = Workspace::new();
    // The schema is larger than a pipe's buffer, so its write meets the closed pipe.
    let mut child = ws
        .cmd(&["schema"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn config_prints_the_composed_manifest_and_the_resolved_stages_without_running() {
    let ws = Workspace::new();
    let args = [
        "config",
        "manifests/quickstart.yaml",
        "-o",
        "manifests/overlays/python-only.yaml",
        "--set",
        "stages.pairs.params.cwes=[cwe-089]",
        "--set",
        "defaults.seed=7",
    ];
    let out = ws.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let composed: serde_yaml::Value = serde_yaml::from_str(&stdout(&out)).unwrap();
    assert_eq!(composed["name"], "quickstart-python");
    assert_eq!(composed["stages"]["pairs"]["params"]["languages"][0], "python");
    assert_eq!(composed["stages"]["pairs"]["params"]["cwes"][0], "cwe-089");
    assert!(
        composed["stages"].get("language-report").is_none(),
        "the overlay deletes it"
    );

    let out = ws.run(&[&args[..], &["--resolved"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let resolved: serde_yaml::Value = serde_yaml::from_str(&stdout(&out)).unwrap();
    let variant = &resolved["stages"]["steered@operator=contrast,theta=1.5"];
    assert_eq!(variant["kind"], "merge");
    assert_eq!(variant["params"]["operator"], "contrast");
    assert_eq!(variant["params"]["theta"], 1.5);
    assert_eq!(variant["inputs"]["secure"][0], "lpo@target=secure");
    // `defaults.seed` reaches a stage that does not set its own.
    assert_eq!(resolved["stages"]["samples"]["params"]["seed"], 7);
    assert!(!ws.path().join(".secvec").exists(), "config must not create a cache");
}

#[test]
fn kinds_describes_one_kind_with_its_params() {
    let ws = Workspace::new();
    let out = ws.run(&["kinds", "generate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("generate (v"), "{text}");
    assert!(
        text.contains("      n (integer; default 1): Samples per prompt.\n"),
        "{text}"
    );
    assert!(
        text.contains("      dtype (one of: f32, bf16, f16; default \"f32\")"),
        "{text}"
    );
    assert!(
        text.contains("      limit (integer or null; optional): Only the first N prompts.\n"),
        "{text}"
    );
    assert!(!text.contains("score ("), "one kind only: {text}");
    let unknown = ws.run(&["kinds", "generat"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no stage kind `generat`; the kinds are pair,"),
        "{}",
        stderr(&unknown)
    );
}

const PAIRS_BY_LANGUAGE: &str = r#"
name: runs-check
stages:
  pairs:
    kind: pair
    matrix:
      languages: [[python], [c]]
    inputs:
      data: {path: data/quickstart-pairs}
  report:
    kind: report
    inputs: {results: "pairs[*]"}
    params:
      title: Pairs
      tables: [{title: per language, rows: [languages], columns: [pairs], aggregate: sum}]
"#;

#[test]
fn every_run_is_recorded_and_runs_diff_and_compare_read_the_records() {
    let ws = Workspace::new();
    ws.write("manifests/runs-check.yaml", PAIRS_BY_LANGUAGE);
    let first = ws.run(&["run", "manifests/runs-check.yaml"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("recorded as run "), "{}", stderr(&first));
    let second = ws.run(&[
        "run",
        "manifests/runs-check.yaml",
        "--set",
        "stages.pairs.params.per_group=2",
        "--set",
        "stages.pairs.params.instruction=Complete the code.",
    ]);
    assert!(second.status.success(), "{}", stderr(&second));
    let ids = (r"\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{4}", "[RUN]");
    let seconds = (r"\d+\.\ds ", "[S]s ");
    let runs = ws.run(&["runs"]);
    assert_eq!(stdout(&runs).lines().count(), 2, "{}", stdout(&runs));
    let diff = ws.run(&["diff", "latest~1"]);
    assert!(diff.status.success(), "{}", stderr(&diff));
    let compare = ws.run(&[
        "compare", "latest~1", "latest", "--stage", "pairs*", "--metric", "pairs",
    ]);
    assert!(compare.status.success(), "{}", stderr(&compare));
    insta::with_settings!({filters => vec![ids, seconds]}, {
        insta::assert_snapshot!("runs", stdout(&runs));
        insta::assert_snapshot!("diff", stdout(&diff));
        insta::assert_snapshot!("compare", stdout(&compare));
    });
    // Records survive gc unless it is asked to forget them.
    let gc = ws.run(&["cache", "gc", "manifests/runs-check.yaml"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    assert_eq!(stdout(&ws.run(&["runs"])).lines().count(), 2);
    let gc = ws.run(&["cache", "gc", "manifests/runs-check.yaml", "--runs"]);
    assert!(stdout(&gc).contains("forgot 2 run records"), "{}", stdout(&gc));
    let none = ws.run(&["diff", "latest"]);
    assert_eq!(none.status.code(), Some(2));
    insta::assert_snapshot!("diff_without_runs", stderr(&none));
}

#[test]
fn plan_under_a_renamed_overlay_compares_with_the_base_run() {
    let ws = Workspace::new();
    ws.write("manifests/runs-check.yaml", PAIRS_BY_LANGUAGE);
    assert!(ws.run(&["run", "manifests/runs-check.yaml"]).status.success());
    ws.write(
        "ablation.yaml",
        "name: runs-check-ablation\nstages:\n  pairs:\n    params: {per_group: 2, instruction: Complete the code.}\n",
    );
    let plan = ws.run(&["plan", "manifests/runs-check.yaml", "-o", "ablation.yaml"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    insta::assert_snapshot!("plan_renamed_overlay", stdout(&plan));
}

#[test]
fn dag_prints_the_graph_as_text_dot_and_mermaid() {
    let ws = Workspace::new();
    ws.write("manifests/runs-check.yaml", PAIRS_BY_LANGUAGE);
    for format in ["text", "dot", "mermaid"] {
        let out = ws.run(&["dag", "manifests/runs-check.yaml", "--format", format]);
        assert!(out.status.success(), "{}", stderr(&out));
        insta::assert_snapshot!(format!("dag_{format}"), stdout(&out));
    }
    assert!(
        !ws.path().join(".secvec").exists(),
        "dag runs nothing and creates no cache"
    );
}

/// `secvec run-stage`, as a cluster node runs it, reports in the job's result what it cannot
/// run: a job made for another version of its kind, and a libtorch job (which it hands to
/// `secvec-worker`) planned for another environment.
#[test]
fn run_stage_reports_in_the_result_a_job_it_cannot_run() {
    use secvec_stage::Stage;
    let ws = Workspace::new();
    let version = secvec_stages::generate::Generate::VERSION;
    for (made_for, says) in [
        (version + 1, format!("the job was made for version {}", version + 1)),
        (version, "differs from the one that planned stage `gen`".to_string()),
    ] {
        let job = serde_json::json!({
            "stage": "gen", "manifest": "m.yaml", "kind": "generate", "stage_version": made_for,
            "params": {}, "labels": {}, "environment": {"torch": "0.0.0"}, "inputs": {},
            "key": "00".repeat(32), "preimage": null, "cache": ws.path().join("cache"),
            "resources": {"cpu": 1, "gpu": 0, "memory_mb": null, "time_s": null}, "attempt": 1,
        });
        ws.write("job.json", &job.to_string());
        let out = ws.run(&["run-stage", "job.json", "--result", "result.json"]);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let result: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ws.path().join("result.json")).unwrap()).unwrap();
        assert!(result["output"].is_null(), "{result}");
        assert!(result["error"].as_str().unwrap().contains(&says), "{result}");
    }
}

#[test]
fn a_manifest_anywhere_names_the_projects_files_through_secvec_home() {
    let (project, elsewhere) = (tempfile::tempdir().unwrap(), Workspace::new());
    std::fs::create_dir_all(project.path().join(".models/tiny")).unwrap();
    std::fs::write(project.path().join(".models/tiny/notes.txt"), "a file of the project\n").unwrap();
    elsewhere.write(
        "m.yaml",
        "name: m\nstages:\n  d:\n    kind: scenarios\n    inputs: {data: {path: '${SECVEC_HOME}/.models/tiny'}}\n",
    );
    let out = elsewhere
        .cmd(&["plan", "m.yaml"])
        .env("SECVEC_HOME", project.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = elsewhere
        .cmd(&["plan", "m.yaml"])
        .env("SECVEC_HOME", elsewhere.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(
        message.contains(".models/tiny does not exist") && message.contains("`${SECVEC_HOME}` is $SECVEC_HOME"),
        "{message}"
    );
}
