//! BM25 scores and tokens equal `rank_bm25`'s `BM25Okapi` (run in the test) within 1e-6, on the
//! quickstart's real functions and on a corpus where common terms get the ε-floored idf.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use secvec_retrieval::bm25::{tokenize, Index, Params};

fn python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import rank_bm25"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("notice: no .venv with rank_bm25 (run scripts/setup.sh); skipping the comparison");
    }
    ok.then_some(py)
}

const REFERENCE: &str = r#"
import json, re, sys
from rank_bm25 import BM25Okapi
job = json.loads(sys.stdin.read())
tok = lambda s: [t.decode() for t in re.findall(rb"[a-z0-9_]+", s.encode().lower())]
corpus = [tok(d) for d in job["documents"]]
bm25 = BM25Okapi(corpus)
print(json.dumps({"tokens": corpus, "scores": [bm25.get_scores(tok(q)).tolist() for q in job["queries"]]}))
"#;

fn compare(python: &Path, documents: &[String], queries: &[&str]) {
    let mut child = Command::new(python)
        .args(["-c", REFERENCE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let job = serde_json::json!({"documents": documents, "queries": queries});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "rank_bm25 failed");
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens: Vec<Vec<String>> = documents.iter().map(|d| tokenize(d)).collect();
    let their_tokens: Vec<Vec<String>> = serde_json::from_value(theirs["tokens"].clone()).unwrap();
    assert_eq!(tokens, their_tokens);
    let index = Index::new(&tokens, Params::default());
    let mut positive = 0;
    for (q, their) in queries.iter().zip(theirs["scores"].as_array().unwrap()) {
        let ours = index.scores(&tokenize(q));
        let their: Vec<f64> = serde_json::from_value(their.clone()).unwrap();
        assert_eq!(ours.len(), their.len());
        for (a, b) in ours.iter().zip(&their) {
            assert!((a - b).abs() < 1e-6, "query {q:?}: {a} vs {b}");
            positive += (*a > 0.0) as usize;
        }
    }
    assert!(positive > 0, "the queries should match something");
}

#[test]
fn scores_equal_rank_bm25_on_real_functions() {
    let Some(python) = python() else {
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/data/quickstart-pairs/train");
    let mut documents = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        for line in std::fs::read_to_string(entry.unwrap().path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            documents.push(v["func_src_before"].as_str().unwrap().to_string());
            documents.push(v["func_src_after"].as_str().unwrap().to_string());
        }
    }
    assert!(documents.len() > 20);
    compare(
        &python,
        &documents,
        &[
            "os.path.join(base, name)",
            "strcpy strncpy memcpy",
            "subprocess.run shlex.quote",
            "yaml.safe_load",
            "ünïcode",
        ],
    );
}

#[test]
fn scores_equal_rank_bm25_where_common_terms_get_the_epsilon_idf() {
    let Some(python) = python() else {
        return;
    };
    // `open` and `read` are in more than half the documents: negative idf, floored to ε·mean.
    let documents: Vec<String> = [
        "open read close",
        "open read",
        "open read write",
        "open os.path.realpath read",
        "pickle.loads",
        "",
        "open open open read",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    compare(
        &python,
        &documents,
        &["open read", "open", "pickle.loads open open", "missing"],
    );
}
