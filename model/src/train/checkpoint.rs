//! Training state on disk: the trainable parameters, AdamW's moments and step, and the log so
//! far. A checkpoint is complete or absent: its tensors are written first, and `checkpoint.json`,
//! which names them, replaces the previous one by rename.

use std::path::Path;

use tch::Tensor;

use super::optim::AdamW;
use secvec_artifacts::training_log::StepLog;

#[derive(serde::Serialize, serde::Deserialize)]
struct Manifest {
    tensors: String,
    adam_step: i32,
    logs: Vec<StepLog>,
}

const MANIFEST: &str = "checkpoint.json";

/// Saves the state after `logs.len()` steps.
pub fn save(dir: &Path, params: &[Tensor], opt: &AdamW, logs: &[StepLog]) -> anyhow::Result<()> {
    let (adam_step, exp_avg, exp_avg_sq) = opt.state();
    std::fs::create_dir_all(dir)?;
    let name = format!("state-{}.safetensors", logs.len());
    let mut named: Vec<(String, Tensor)> = Vec::new();
    for (i, ((p, m), v)) in params.iter().zip(exp_avg).zip(exp_avg_sq).enumerate() {
        named.push((format!("param.{i}"), p.detach()));
        named.push((format!("exp_avg.{i}"), m.shallow_clone()));
        named.push((format!("exp_avg_sq.{i}"), v.shallow_clone()));
    }
    Tensor::write_safetensors(&named, dir.join(&name))?;
    let manifest = Manifest {
        tensors: name.clone(),
        adam_step,
        logs: logs.to_vec(),
    };
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(&manifest)?)?;
    std::fs::rename(&tmp, dir.join(MANIFEST))?;
    for old in std::fs::read_dir(dir)?.flatten() {
        let file = old.file_name().to_string_lossy().to_string();
        if file.starts_with("state-") && file != name {
            let _ = std::fs::remove_file(old.path());
        }
    }
    Ok(())
}

/// The steps the checkpoint in `dir` covers, if there is one.
pub fn steps(dir: &Path) -> Option<usize> {
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).ok()?).ok()?;
    Some(manifest.logs.len())
}

/// Loads the last checkpoint into `params` and `opt`, returning the log of the steps it covers
/// (empty when there is none).
pub fn restore(dir: &Path, params: &[Tensor], opt: &mut AdamW) -> anyhow::Result<Vec<StepLog>> {
    let Ok(text) = std::fs::read(dir.join(MANIFEST)) else {
        return Ok(Vec::new());
    };
    let manifest: Manifest = serde_json::from_slice(&text)?;
    let tensors: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(dir.join(&manifest.tensors))?
        .into_iter()
        .collect();
    let get = |name: String| {
        tensors
            .get(&name)
            .ok_or_else(|| anyhow::anyhow!("checkpoint {} lacks {name}", manifest.tensors))
    };
    let _guard = tch::no_grad_guard();
    let mut moments = (Vec::new(), Vec::new());
    for (i, p) in params.iter().enumerate() {
        let mut p = p.shallow_clone();
        p.copy_(get(format!("param.{i}"))?);
        moments.0.push(get(format!("exp_avg.{i}"))?.to_device(p.device()));
        moments.1.push(get(format!("exp_avg_sq.{i}"))?.to_device(p.device()));
    }
    opt.restore(manifest.adam_step, moments.0, moments.1);
    Ok(manifest.logs)
}
