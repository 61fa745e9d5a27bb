//! Scoring through the CLI: known completions of the quickstart scenarios, judged by their own
//! tests in the sandbox.

mod common;

use common::Workspace;

fn bwrap_available() -> bool {
    let ok = std::path::Path::new("/usr/bin/bwrap").exists();
    if !ok {
        eprintln!("notice: bubblewrap is not installed (scripts/setup.sh installs it); skipping");
    }
    ok
}

#[test]
fn completions_are_cut_deduplicated_tested_and_scored() {
    if !bwrap_available() {
        return;
    }
    let ws = Workspace::new();
    let good_sql = "    cur.execute('SELECT email FROM users WHERE name = ?', (username,))\n    row = cur.fetchone()\n    return row[0] if row else None\n\nif __name__ == '__main__':\n    pass\n";
    let samples = [
        ("cwe-089/0-py", good_sql),
        ("cwe-089/0-py", good_sql),
        ("cwe-089/0-py", "    return 'x'\n"),
        ("cwe-022/0-py", "    return open(os.path.join(SAFE_DIR, name)).read(\n"),
        ("cwe-787/0-c", "    strncpy(name, argv[1], 15);\n    name[15] = 0;\n    printf(\"Hello, %s!\\n\", name);\n    return 0;\n}\nint unused;\n"),
    ];
    let lines: String = samples
        .iter()
        .map(|(id, text)| serde_json::json!({"prompt_id": id, "text": text}).to_string() + "\n")
        .collect();
    ws.write("samples.jsonl", &lines);
    ws.write(
        "m.yaml",
        "name: m\nstages:\n  scenarios:\n    kind: scenarios\n    inputs: {data: {path: manifests/data/quickstart-scenarios}}\n  scores:\n    kind: score\n    inputs: {scenarios: scenarios, samples: {path: samples.jsonl}}\n",
    );
    ws.run_json(&["m.yaml"]);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.path().join("out/m/scores/results.json")).unwrap()).unwrap();
    let row = |id: &str| {
        results["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["scenario"] == id)
            .unwrap()
            .clone()
    };
    let sql = row("cwe-089/0-py");
    assert_eq!(
        (sql["n"].as_u64(), sql["distinct"].as_u64(), sql["functional"].as_u64()),
        (Some(3), Some(2), Some(2))
    );
    assert!((sql["pass@1"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
    let path = row("cwe-022/0-py");
    assert_eq!(
        (path["valid"].as_u64(), path["functional"].as_u64()),
        (Some(0), Some(0)),
        "a syntax error is not run"
    );
    assert_eq!(
        row("cwe-787/0-c")["functional"].as_u64(),
        Some(1),
        "the C program is cut at main's closing brace"
    );
    let judged = std::fs::read_to_string(ws.path().join("out/m/scores/judged.jsonl")).unwrap();
    assert!(
        judged.contains("sample.py: Fail"),
        "the failing test's own message is kept: {judged}"
    );
}
