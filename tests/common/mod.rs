//! Helpers for driving the `secvec` binary in a scratch workspace.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use secvec_stage::worker::ServeRequest;
use secvec_stage::Dtype;
use serde_json::{json, Value};

/// Whether the scoring sandbox can run here; says so when it cannot (the caller skips).
pub fn bwrap_available() -> bool {
    let ok = Path::new("/usr/bin/bwrap").exists();
    if !ok {
        eprintln!("notice: bubblewrap is not installed (scripts/setup.sh installs it); skipping");
    }
    ok
}

pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    /// A scratch directory holding a copy of the repository's `manifests/` and a link to its
    /// `.models/`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&repo.join("manifests"), &dir.path().join("manifests"));
        // The quickstart reads the small real model that setup fetched.
        std::os::unix::fs::symlink(repo.join(".models"), dir.path().join(".models")).unwrap();
        Workspace { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_secvec"));
        c.current_dir(self.path())
            .args(args)
            .env_remove("SECVEC_CACHE")
            .env_remove("SECVEC_OUT");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs with `--json` and returns `stage -> event`, asserting success.
    pub fn run_json(&self, args: &[&str]) -> std::collections::BTreeMap<String, Value> {
        let mut full = vec!["run"];
        full.extend_from_slice(args);
        full.push("--json");
        let out = self.run(&full);
        assert!(
            out.status.success(),
            "secvec {full:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        events(&out.stdout)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// The `finished` events of `run --json`, by stage.
pub fn events(stdout: &[u8]) -> std::collections::BTreeMap<String, Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not a JSON event: {l}: {e}")))
        .filter(|v| v["event"] == "finished")
        .map(|v| (v["stage"].as_str().unwrap().to_string(), v))
        .collect()
}

pub fn statuses(events: &std::collections::BTreeMap<String, Value>) -> Vec<(String, String)> {
    events
        .iter()
        .map(|(k, v)| (k.clone(), v["status"].as_str().unwrap().to_string()))
        .collect()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A synthetic pair dataset large enough that stages take a noticeable time.
pub fn write_big_dataset(root: &Path, files: usize, pairs_per_file: usize) {
    for split in ["train", "val"] {
        let dir = root.join(split);
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            let mut text = String::new();
            for i in 0..pairs_per_file {
                let body: String = (0..12).map(|k| format!("    x{k} = compute({i}, {k})\n")).collect();
                let rec = serde_json::json!({
                    "func_name": format!("f{f}_{i}"),
                    "func_src_before": format!("def f{f}_{i}(q):\n{body}    db.execute('SELECT ' + q)\n"),
                    "func_src_after": format!("def f{f}_{i}(q):\n{body}    db.execute('SELECT ?', (q,))\n"),
                    "vul_type": format!("cwe-{:03}", 20 + f),
                    "file_name": format!("m{f}.py"),
                });
                text.push_str(&rec.to_string());
                text.push('\n');
            }
            std::fs::write(dir.join(format!("part-{f}.jsonl")), text).unwrap();
        }
    }
}

/// A manifest of several independent and dependent stages over the synthetic dataset.
pub const BIG_MANIFEST: &str = r#"
name: big
stages:
  all:
    kind: pair
    inputs: {data: {path: big-data}}
  by-cwe:
    kind: pair
    matrix:
      cwes: [[cwe-020], [cwe-021], [cwe-022], [cwe-023]]
    inputs: {data: {path: big-data}}
  summary:
    kind: report
    inputs: {results: ["by-cwe[*]", all]}
    params:
      title: big
      tables:
        - {title: pairs, rows: [cwe], columns: [pairs], aggregate: sum}
"#;

/// Whether setup fetched `.models/<name>`; says so when it did not (the caller skips).
pub fn model_available(name: &str) -> bool {
    let ok = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".models")
        .join(name)
        .is_dir();
    if !ok {
        eprintln!("notice: no .models/{name} (scripts/setup.sh fetches it); skipping");
    }
    ok
}

/// `n` distinct Python completions of the quickstart's scenarios that each pause for 1.2 s
/// before their code: a score stage over them takes long enough to watch or interrupt.
pub fn slow_python_samples(ws: &Workspace, n: usize) -> PathBuf {
    let known = std::fs::read_to_string(ws.path().join("manifests/data/quickstart-completions.jsonl")).unwrap();
    let python: Vec<Value> = known
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["prompt_id"].as_str().unwrap().ends_with("-py"))
        .collect();
    let samples: String = (0..n)
        .map(|i| {
            let v = &python[i % python.len()];
            let text = format!(
                "    import time; time.sleep(1.2)  # variant {i}\n{}",
                v["text"].as_str().unwrap()
            );
            format!("{}\n", serde_json::json!({"prompt_id": v["prompt_id"], "text": text}))
        })
        .collect();
    ws.write("samples.jsonl", &samples)
}

pub const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tiny fixture model with a ChatML template, as a model folder named `tiny-chat`.
pub fn tiny_chat_model(tmp: &Path) -> PathBuf {
    let dir = tmp.join("tiny-chat");
    std::fs::create_dir(&dir).unwrap();
    let fixture = root().join("model/fixtures/llama");
    for f in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
    ] {
        std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
    }
    let config = json!({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "chat_template": CHATML});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    dir
}

/// `secvec serve` on a free port of 127.0.0.1, stopped when dropped.
pub struct Served {
    child: Child,
    /// Up to `/v1`.
    pub url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(model: &Path) -> Served {
    let request = ServeRequest {
        model: model.to_path_buf(),
        adapter: None,
        host: "127.0.0.1".into(),
        port: 0,
        device: "cpu".into(),
        dtype: Dtype::F32,
        name: None,
        kv_budget_mib: None,
        batch_size: None,
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_secvec-worker"))
        .arg("serve")
        .arg(serde_json::to_string(&request).unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .strip_prefix("listening on ")
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    Served { child, url }
}
