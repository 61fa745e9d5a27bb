//! Training side by side with PEFT + transformers on one device: ten LoRA SFT steps, and one LPO
//! step against SecVecCoder's loss written out in PyTorch. The reference is
//! `model/tests/training_reference.py`, run by the caller's Python; the model crate's tests run
//! these on the CPU, and the GPU bundle's check on the GPU.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use tch::{Device, Kind, Tensor};

use super::batch::{Batch, Padding, Sequence};
use super::logprobs::token_logprobs;
use super::loss::{self, Lpo, Target};
use super::optim::{clip_grad_norm, AdamW, Schedule};
use super::token_diff::changed_tokens;
use super::trainer::{self, Example, Hyper, Objective};
use super::{set_training, trainable_parameters};
use crate::lora::{Adapter, Attach, LoraConfig};
use crate::transformer::Transformer;

/// The Python side: an interpreter with torch, transformers and PEFT, and the reference script.
pub struct Reference {
    pub python: PathBuf,
    pub script: PathBuf,
}

impl Reference {
    /// Runs the script on `spec` in `dir`: its per-step losses and its final adapter.
    fn run(&self, dir: &Path, spec: &serde_json::Value) -> anyhow::Result<(Vec<f64>, Adapter)> {
        std::fs::write(dir.join("spec.json"), spec.to_string())?;
        let out = Command::new(&self.python)
            .arg(&self.script)
            .arg(dir.join("spec.json"))
            .arg(dir.join("peft"))
            .output()
            .with_context(|| format!("running {}", self.python.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed: {}",
                self.script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let losses = printed["losses"]
            .as_array()
            .context("the reference printed no losses")?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect();
        Ok((losses, Adapter::load(&dir.join("peft"), Device::Cpu)?))
    }
}

/// Both sides' losses per optimiser step, and how far apart the final adapters are.
#[derive(Debug, serde::Serialize)]
pub struct Comparison {
    pub losses: Vec<f64>,
    pub reference_losses: Vec<f64>,
    /// ‖ours − theirs‖ / ‖theirs‖ over every LoRA factor.
    pub adapter_difference: f64,
}

impl Comparison {
    /// The largest |ours − theirs| / |theirs| over the steps' losses; infinite where a loss is
    /// not a number (a NaN must not read as agreement) or the step counts differ.
    pub fn loss_difference(&self) -> f64 {
        if self.losses.len() != self.reference_losses.len() {
            return f64::INFINITY;
        }
        self.losses
            .iter()
            .zip(&self.reference_losses)
            .map(|(a, b)| (a - b).abs() / b.abs())
            .map(|d| if d.is_nan() { f64::INFINITY } else { d })
            .fold(0.0, f64::max)
    }
}

/// Rank 4, no dropout (so both sides compute the same thing).
pub fn lora_config() -> LoraConfig {
    LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        ..LoraConfig::default()
    }
}

/// Sequences of 3–6 prompt tokens and 2–9 completion tokens, from a fixed generator.
pub fn sequences(n: usize, vocab: i64) -> Vec<Sequence> {
    let mut state = 12345u64;
    let mut next = |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    (0..n)
        .map(|_| {
            let p = 3 + next(4) as usize;
            let c = 2 + next(8) as usize;
            let ids: Vec<i64> = (0..p + c).map(|_| next(vocab as u64) as i64).collect();
            Sequence::completion(&ids[..p], &ids[p..])
        })
        .collect()
}

/// Ten SFT steps of two micro-batches of two sequences (the last step's second micro-batch is
/// short), linear schedule with warmup, weight decay and clipping, from the same initial adapter
/// on both sides. Works in `dir`.
pub fn ten_sft_steps(base: &Path, device: Device, reference: &Reference, dir: &Path) -> anyhow::Result<Comparison> {
    let mut model = Transformer::load(base, device, Kind::Float)?;
    let initial = Adapter::init(&mut model, lora_config(), &base.display().to_string(), 7);
    initial.save(&dir.join("initial"))?;
    let seqs = sequences(12, model.config.vocab_size);
    let mut steps: Vec<Vec<Vec<usize>>> = (0..9)
        .map(|s| {
            vec![
                vec![(4 * s) % 12, (4 * s + 1) % 12],
                vec![(4 * s + 2) % 12, (4 * s + 3) % 12],
            ]
        })
        .collect();
    steps.push(vec![vec![0, 5], vec![9]]);
    let (lr, weight_decay, warmup, max_norm) = (5e-3, 0.01, 2, 1.0);
    let spec = serde_json::json!({
        "base": base, "adapter": dir.join("initial"), "device": device_name(device),
        "sequences": seqs.iter().map(|s| serde_json::json!({"ids": s.ids, "weights": s.weights})).collect::<Vec<_>>(),
        "steps": steps,
        "lr": lr, "weight_decay": weight_decay, "warmup": warmup, "schedule": "linear", "max_grad_norm": max_norm,
    });
    let (reference_losses, theirs) = reference.run(dir, &spec)?;

    let mut model = Transformer::load(base, device, Kind::Float)?;
    initial.attach(&mut model, Attach::Unmerged)?;
    set_training(&model, true);
    let params = trainable_parameters(&mut model);
    let tensors: Vec<Tensor> = params.iter().map(|(_, p)| p.shallow_clone()).collect();
    let mut opt = AdamW::new(&tensors, weight_decay);
    let mut losses = Vec::new();
    for (k, step) in steps.iter().enumerate() {
        let n_tokens: usize = step.iter().flatten().map(|&i| seqs[i].target_tokens()).sum();
        let mut step_loss = 0.0;
        for micro in step {
            let refs: Vec<&Sequence> = micro.iter().map(|&i| &seqs[i]).collect();
            let batch = Batch::collate(&refs, Padding::Right, device);
            let hidden = model.hidden_states(&batch.ids, &batch.attention_mask);
            let lp = token_logprobs(&model, &hidden, &batch.ids, &batch.weights.gt(0.0), 4);
            let w = lp.gather(&batch.weights);
            step_loss += lp.backward_linear(&loss::sft_coefficients(&w, n_tokens as f64));
        }
        clip_grad_norm(&tensors, max_norm);
        opt.step(lr * Schedule::Linear.factor(k, warmup, steps.len()));
        losses.push(step_loss);
    }
    Ok(Comparison {
        losses,
        reference_losses,
        adapter_difference: relative_difference(&params, &theirs),
    })
}

/// One LPO step for the secure adapter over four pairs sharing a prompt, whose completions differ
/// in a few tokens, in micro-batches of three, from an adapter with non-zero B (so that A has a
/// gradient too).
pub fn one_lpo_step(base: &Path, device: Device, reference: &Reference, dir: &Path) -> anyhow::Result<Comparison> {
    let mut model = Transformer::load(base, device, Kind::Float)?;
    let mut initial = Adapter::init(&mut model, lora_config(), &base.display().to_string(), 5);
    tch::manual_seed(5);
    for (_, (_, b)) in initial.modules.iter_mut() {
        *b = Tensor::randn(b.size(), (Kind::Float, Device::Cpu)).to_device(b.device()) * 0.05;
    }
    initial.save(&dir.join("initial"))?;
    let vocab = model.config.vocab_size;
    let mut examples = Vec::new();
    let mut seqs = Vec::new();
    for s in sequences(4, vocab) {
        let p = s
            .weights
            .iter()
            .position(|w| *w != 0.0)
            .context("a sequence without target")?;
        let (prompt, secure) = s.ids.split_at(p);
        let mut vulnerable = secure.to_vec();
        vulnerable[0] = (vulnerable[0] + 1) % vocab;
        vulnerable.push(3);
        let (m_vul, m_sec) = changed_tokens(&vulnerable, secure);
        let marks = |m: &[bool]| -> Vec<f32> {
            std::iter::repeat_n(0.0, prompt.len())
                .chain(m.iter().map(|&x| f32::from(u8::from(x))))
                .collect()
        };
        let (sec, vul) = (
            Sequence::completion(prompt, secure),
            Sequence::completion(prompt, &vulnerable),
        );
        for (seq, changed) in [(&sec, marks(&m_sec)), (&vul, marks(&m_vul))] {
            seqs.push(serde_json::json!({"ids": seq.ids, "weights": seq.weights, "changed": changed}));
        }
        examples.push(Example::Pair {
            secure: sec,
            vulnerable: vul,
            secure_changed: marks(&m_sec),
            vulnerable_changed: marks(&m_vul),
        });
    }
    let lpo = Lpo::default();
    let (lr, weight_decay, max_norm) = (1e-2, 0.05, 0.3);
    let spec = serde_json::json!({
        "base": base, "adapter": dir.join("initial"), "device": device_name(device), "sequences": seqs,
        "steps": [[[0, 1, 2, 3], [4, 5, 6, 7]]], "objective": "lpo",
        "beta": lpo.beta, "gamma": lpo.gamma, "epsilon": lpo.epsilon,
        "lr": lr, "weight_decay": weight_decay, "warmup": 0, "schedule": "linear", "max_grad_norm": max_norm,
    });
    let (reference_losses, theirs) = reference.run(dir, &spec)?;

    let mut model = Transformer::load(base, device, Kind::Float)?;
    initial.attach(&mut model, Attach::Unmerged)?;
    let params = trainable_parameters(&mut model);
    let tensors: Vec<Tensor> = params.iter().map(|(_, p)| p.shallow_clone()).collect();
    let hyper = Hyper {
        epochs: 1,
        learning_rate: lr,
        batch_size: examples.len(),
        micro_batch_size: 3,
        warmup_steps: 0,
        // One step: the linear schedule's factor is 1 at step 0, as Python's.
        schedule: Schedule::Linear,
        weight_decay,
        max_grad_norm: max_norm,
        seed: 0,
        chunk: 3,
        gradient_checkpointing: false,
    };
    let objective = Objective::Lpo {
        lpo,
        target: Target::Secure,
    };
    let logs = trainer::train(&model, &tensors, &examples, objective, &hyper, None, &mut |_, _| Ok(()))?;
    Ok(Comparison {
        losses: logs.iter().map(|l| l.loss).collect(),
        reference_losses,
        adapter_difference: relative_difference(&params, &theirs),
    })
}

/// The device as PyTorch names it.
fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// ‖ours − theirs‖ / ‖theirs‖ over every LoRA factor.
fn relative_difference(params: &[(String, Tensor)], theirs: &Adapter) -> f64 {
    let (mut diff, mut norm) = (0.0, 0.0);
    for (name, p) in params {
        let (module, which) = name.rsplit_once('.').expect("factor names end in .lora_A/.lora_B");
        let (a, b) = &theirs.modules[module];
        let t = if which == "lora_A" { a } else { b };
        let p = p.to_device(Device::Cpu);
        diff += (p - t).pow_tensor_scalar(2).sum(Kind::Double).double_value(&[]);
        norm += t.pow_tensor_scalar(2).sum(Kind::Double).double_value(&[]);
    }
    (diff / norm).sqrt()
}
