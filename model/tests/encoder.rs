//! The BERT encoder gives sentence-transformers' embeddings (all-MiniLM-L6-v2 from its registry
//! package), with the folder's own pooling and with the other pooling modes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use secvec_model::encoder::Encoder;
use tch::Device;

fn minilm() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.models/minilm");
    let ok = dir.join("modules.json").is_file();
    if !ok {
        eprintln!("notice: no .models/minilm (run scripts/setup.sh); skipping the encoder comparison");
    }
    ok.then_some(dir)
}

fn texts() -> Vec<String> {
    vec![
        "Use yaml.safe_load instead of yaml.load to avoid code execution.".into(),
        "strcpy(buf, argv[1]);".into(),
        "The query string is concatenated into the SQL statement — user input reaches execute()".into(),
        "x".into(),
        // Longer than max_seq_length (256 tokens): both sides truncate.
        "def handler(request):\n    path = request.args['file']\n    return open(path).read()\n".repeat(30),
    ]
}

/// sentence-transformers' embeddings of `texts` from the folder `dir`, as rows.
fn reference(python: &Path, dir: &Path, texts: &[String]) -> Vec<Vec<f32>> {
    let script = "import json, sys\n\
        from sentence_transformers import SentenceTransformer\n\
        m = SentenceTransformer(sys.argv[1], device='cpu')\n\
        texts = json.loads(sys.stdin.read())\n\
        print(json.dumps(m.encode(texts, batch_size=2).tolist()))\n";
    let mut child = Command::new(python)
        .args(["-c", script, &dir.display().to_string()])
        .env("HF_HUB_OFFLINE", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(texts).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "sentence-transformers failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn max_difference(dir: &Path, python: &Path) -> f32 {
    let texts = texts();
    let ours = Encoder::load(dir, Device::Cpu).unwrap().embed(&texts, 3).unwrap();
    let theirs = reference(python, dir, &texts);
    assert_eq!(ours.size(), [texts.len() as i64, theirs[0].len() as i64]);
    let ours: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&ours).unwrap();
    let mut worst = 0f32;
    for (a, b) in ours.iter().zip(&theirs) {
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    worst
}

#[test]
fn embeddings_equal_sentence_transformers() {
    let (Some(dir), Some(python)) = (minilm(), common::sentence_transformers_python()) else {
        return;
    };
    let worst = max_difference(&dir, &python);
    assert!(worst < 1e-4, "largest difference {worst}");
}

#[test]
fn other_pooling_modes_equal_sentence_transformers() {
    let (Some(dir), Some(python)) = (minilm(), common::sentence_transformers_python()) else {
        return;
    };
    for mode in ["cls_token", "max_tokens", "mean_sqrt_len_tokens"] {
        // The same model behind another Pooling module and no Normalize.
        let tmp = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != "1_Pooling" && entry.file_name() != "modules.json" {
                std::os::unix::fs::symlink(entry.path(), tmp.path().join(entry.file_name())).unwrap();
            }
        }
        std::fs::create_dir(tmp.path().join("1_Pooling")).unwrap();
        let pooling = serde_json::json!({
            "word_embedding_dimension": 384,
            "pooling_mode_cls_token": mode == "cls_token",
            "pooling_mode_mean_tokens": false,
            "pooling_mode_max_tokens": mode == "max_tokens",
            "pooling_mode_mean_sqrt_len_tokens": mode == "mean_sqrt_len_tokens",
        });
        std::fs::write(tmp.path().join("1_Pooling/config.json"), pooling.to_string()).unwrap();
        let modules = serde_json::json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]);
        std::fs::write(tmp.path().join("modules.json"), modules.to_string()).unwrap();
        let worst = max_difference(tmp.path(), &python);
        assert!(worst < 1e-4, "{mode}: largest difference {worst}");
    }
}

#[test]
fn a_folder_that_is_not_an_encoder_is_refused_naming_the_file() {
    let Some(dir) = minilm() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "config.json" {
            std::os::unix::fs::symlink(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
    }
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(tmp.path().join("config.json"), config.replace("\"bert\"", "\"llama\"")).unwrap();
    let err = Encoder::load(tmp.path(), Device::Cpu).err().unwrap().to_string();
    assert!(
        err.contains("config.json") && err.contains("model_type") && err.contains("llama"),
        "{err}"
    );
}
