//! The cache never serves a result from another world: the tools' identity is in the key, the
//! binary finds its tools without the shell setup, and a changed store is noticed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{bwrap_available, statuses, Workspace};
use serde_json::Value;

fn plan_rows(ws: &Workspace, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["plan", "manifests/quickstart.yaml", "--json"];
    full.extend_from_slice(args);
    let out = ws.run(&full);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn row<'a>(rows: &'a [Value], stage: &str) -> &'a Value {
    rows.iter().find(|r| r["stage"] == stage).unwrap()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_forced_rerun_without_the_shell_setup_writes_the_same_bytes() {
    if !bwrap_available() {
        return;
    }
    let ws = Workspace::new();
    let first = ws.run_json(&["manifests/quickstart.yaml"]);
    // Every stage forced, by the bare binary: no PATH to the project's environments, no
    // VIRTUAL_ENV, another working directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let manifest = ws.path().join("manifests/quickstart.yaml");
    let mut args: Vec<String> = vec![
        "--cache".into(),
        ws.path().join(".secvec").display().to_string(),
        "--out".into(),
        ws.path().join("out").display().to_string(),
        "run".into(),
        manifest.display().to_string(),
        "--json".into(),
    ];
    for stage in first.keys() {
        args.extend(["--force".into(), stage.split('@').next().unwrap().to_string()]);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_secvec"))
        .args(&args)
        .current_dir(elsewhere.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", elsewhere.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let forced = common::events(&out.stdout);
    assert!(statuses(&forced).iter().all(|(_, s)| s == "ran"), "{forced:?}");
    // Deterministic stages write the same bytes, so a forced rerun changes nothing downstream;
    // only `latency` measures time (and the report that shows it).
    for (stage, e) in &first {
        if stage != "latency" && stage != "model-report" {
            assert_eq!(
                e["output"], forced[stage]["output"],
                "{stage} is not byte-identical when rerun"
            );
        }
    }
    // `auto` is resolved before hashing: on a machine without CUDA it is the CPU's key.
    let torch = std::process::Command::new(env!("CARGO_BIN_EXE_secvec-worker"))
        .arg("devices")
        .output()
        .unwrap();
    let torch: Value = serde_json::from_slice(&torch.stdout).unwrap();
    if torch["cuda_devices"] == 0 {
        let rows = plan_rows(&ws, &["--set", "stages.samples.params.device=auto"]);
        assert_eq!(row(&rows, "samples")["action"], "cached", "{rows:?}");
    }
}

#[test]
fn a_changed_tool_version_reruns_its_stage_and_plan_says_why() {
    if !bwrap_available() {
        return;
    }
    let ws = Workspace::new();
    let tools = tempfile::tempdir().unwrap();
    chmod(tools.path(), 0o755);
    let cppcheck = tools.path().join("cppcheck");
    let wrapper = |version: &str| {
        std::fs::write(
            &cppcheck,
            format!("#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'Cppcheck {version}'; exit 0; }}\nexec /usr/bin/cppcheck \"$@\"\n"),
        )
        .unwrap();
        chmod(&cppcheck, 0o755);
    };
    wrapper("2.10-a");
    let set = format!("stages.known-scores.params.cppcheck={}", cppcheck.display());
    let probes = ws.path().join("probes");
    let secvec = |command: &str| {
        let args = [
            command,
            "manifests/quickstart.yaml",
            "--only",
            "known-scores",
            "--json",
            "--set",
            &set,
        ];
        let out = ws.cmd(&args).env("SECVEC_PROBE_CACHE", &probes).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let run = || common::events(&secvec("run"));
    let first = run();
    assert_eq!(first["known-scores"]["status"], "ran");
    let provenance: Value = serde_json::from_str(
        &std::fs::read_to_string(ws.path().join("out/quickstart/known-scores.provenance.json")).unwrap(),
    )
    .unwrap();
    let env = &provenance["provenance"]["environment"];
    assert_eq!(env["oracles"]["cppcheck"]["version"], "Cppcheck 2.10-a", "{env}");
    assert!(env["python"]["packages"]["func-timeout"].is_string(), "{env}");
    assert!(env["oracles"]["semgrep"]["version"].is_string(), "{env}");

    wrapper("2.10-b");
    let rows: Vec<Value> = String::from_utf8_lossy(&secvec("plan"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(row(&rows, "scenarios")["action"], "cached");
    let known = row(&rows, "known-scores");
    assert_eq!(known["action"], "run");
    assert_eq!(
        known["why"],
        "environment changed: oracles.cppcheck.version: \"Cppcheck 2.10-a\" → \"Cppcheck 2.10-b\""
    );
    assert_eq!(run()["known-scores"]["status"], "ran");
}

#[test]
fn a_changed_store_is_noticed_and_recomputed() {
    if !bwrap_available() {
        return;
    }
    let ws = Workspace::new();
    let only = ["manifests/quickstart.yaml", "--only", "known-scores"];
    let first = ws.run_json(&only);
    let scenarios = ws.path().join("out/quickstart/scenarios");
    let functional = walkdir(&scenarios)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "functional.py"))
        .expect("the scenarios stage writes functional tests");

    // Deleted through the out/ link: plan says so; run recomputes it, and what reads it stays
    // cached since the recomputed bytes are the same.
    std::fs::remove_file(&functional).unwrap();
    let rows = plan_rows(&ws, &["--only", "known-scores"]);
    let why = row(&rows, "scenarios")["why"].as_str().unwrap();
    assert!(
        why.contains("cached result not usable") && why.contains("was removed"),
        "{why}"
    );
    let again = ws.run_json(&only);
    assert_eq!(again["scenarios"]["status"], "ran");
    assert_eq!(again["scenarios"]["output"], first["scenarios"]["output"]);
    assert_eq!(again["known-scores"]["status"], "cached");
    assert!(functional.is_file());

    // Edited in place, same size (file modes do not stop root).
    chmod(&functional, 0o644);
    let text = std::fs::read_to_string(&functional).unwrap();
    std::fs::write(
        &functional,
        text.replacen("def ", "def_", 1).replacen("import", "IMPORT", 1),
    )
    .unwrap();
    let rows = plan_rows(&ws, &["--only", "known-scores"]);
    let why = row(&rows, "scenarios")["why"].as_str().unwrap();
    assert!(why.contains("changed after they were cached"), "{why}");
    assert_eq!(ws.run_json(&only)["scenarios"]["status"], "ran");
    assert_eq!(std::fs::read_to_string(&functional).unwrap(), text);

    // Edited with its stamps forged too: only the full re-hash of a stage's inputs before it
    // runs can tell, and it refuses to run on them.
    let store_dir = std::fs::canonicalize(&scenarios).unwrap();
    let digest = store_dir.file_name().unwrap().to_string_lossy().to_string();
    chmod(&functional, 0o644);
    std::fs::write(&functional, text.replacen("import", "IMPORT", 1)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let stamps = secvec_cache::TreeStamps::of(&store_dir).unwrap();
    std::fs::write(
        ws.path().join(format!(".secvec/stamps/{digest}.json")),
        serde_json::to_vec(&stamps).unwrap(),
    )
    .unwrap();
    let out = ws.run(&[
        "run",
        "manifests/quickstart.yaml",
        "--only",
        "known-scores",
        "--force",
        "known-scores",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let events = common::events(&out.stdout);
    let err = events["known-scores"]["error"].as_str().unwrap();
    assert!(
        err.contains("input `scenarios`") && err.contains("changed since it was hashed"),
        "{err}"
    );
    let healed = ws.run_json(&only);
    assert_eq!(healed["scenarios"]["status"], "ran");
    assert_eq!(healed["known-scores"]["status"], "cached");
    assert_eq!(std::fs::read_to_string(&functional).unwrap(), text);
}

fn walkdir(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn doctor_says_what_it_found_and_what_is_missing() {
    let ws = Workspace::new();
    let doctor = |home: Option<&Path>| {
        let mut cmd = ws.cmd(&["doctor"]);
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", ws.path())
            .env("SECVEC_PROBE_CACHE", ws.path().join("probes"));
        if let Some(h) = home {
            cmd.env("SECVEC_HOME", h);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (code, text) = doctor(None);
    for what in [
        "project",
        "libtorch",
        "python",
        "bandit",
        "semgrep",
        "gcc",
        "cppcheck",
        "codeql",
        "bubblewrap",
        "setpriv",
        "root",
        "cgroups",
        "SmolLM2-135M",
        "MiniLM-L6-v2",
        "Qwen2.5-Coder-0.5B",
    ] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(what) && l.split_whitespace().count() > 2),
            "no `{what}` line:\n{text}"
        );
    }
    let python_ok = text.lines().any(|l| l.starts_with("ok") && l.contains(" python "));
    if bwrap_available() && python_ok {
        assert_eq!(code, Some(0), "{text}");
    }
    // Pointed at a folder without the project's environments, the Python on PATH lacks the
    // tests' packages: a stage could not run, and doctor says which.
    let empty = tempfile::tempdir().unwrap();
    let (code, text) = doctor(Some(empty.path()));
    let python = text.lines().find(|l| l.contains(" python ")).unwrap();
    assert!(python.starts_with("MISSING") && python.contains("lacks"), "{text}");
    assert_eq!(code, Some(1));
    // A model setup has not fetched is named with where it belongs, and stops nothing.
    let qwen = text.lines().find(|l| l.contains(" Qwen2.5-Coder-0.5B ")).unwrap();
    assert!(
        qwen.starts_with("absent") && qwen.contains("run scripts/setup.sh"),
        "{text}"
    );
}
