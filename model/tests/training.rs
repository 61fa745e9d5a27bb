//! LoRA SFT equals PEFT + transformers step by step, and the chunked log-probabilities equal
//! the full ones.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use secvec_model::lora::{Adapter, Attach, LoraConfig};
use secvec_model::train::batch::{Batch, Padding, Sequence};
use secvec_model::train::logprobs::token_logprobs;
use secvec_model::train::loss::{Lpo, Target};
use secvec_model::train::optim::{clip_grad_norm, AdamW, Schedule};
use secvec_model::train::token_diff::changed_tokens;
use secvec_model::train::trainer::{self, Example, Hyper, Objective};
use secvec_model::train::{loss, set_training, trainable_parameters};
use secvec_model::transformer::{PassOptions, Transformer};
use tch::{Device, Kind, Tensor};

/// Training passes seed libtorch's global generator (one training per worker process): tests
/// that train take turns, or one test's seeds would land in another's dropout masks.
static GLOBAL_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn fixture() -> PathBuf {
    common::fixtures().join("llama")
}

/// Rank 4, no dropout (so both sides compute the same thing).
fn lora_config() -> LoraConfig {
    LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        ..LoraConfig::default()
    }
}

/// Sequences of 3–6 prompt tokens and 2–9 completion tokens, from a fixed generator.
fn sequences(n: usize, vocab: i64) -> Vec<Sequence> {
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

fn model_with_adapter(adapter: &Adapter) -> Transformer {
    let mut model = Transformer::load(&fixture(), Device::Cpu, Kind::Float).unwrap();
    adapter.attach(&mut model, Attach::Unmerged).unwrap();
    model
}

#[test]
fn chunked_logprobs_and_their_gradient_equal_the_full_computation() {
    let mut model = Transformer::load(&fixture(), Device::Cpu, Kind::Float).unwrap();
    let mut adapter = Adapter::init(&mut model, lora_config(), "llama", 3);
    // Non-zero B, so every factor has a gradient.
    for (_, (_, b)) in adapter.modules.iter_mut() {
        *b = Tensor::randn(b.size(), (Kind::Float, Device::Cpu)) * 0.1;
    }
    let vocab = model.config.vocab_size;
    let seqs = sequences(3, vocab);
    let refs: Vec<&Sequence> = seqs.iter().collect();
    for padding in [Padding::Right, Padding::Left] {
        let batch = Batch::collate(&refs, padding, Device::Cpu);
        // None: the full computation; Some(fused): chunked, in one pass or two.
        let grads = |chunked: Option<bool>| {
            let mut model = model_with_adapter(&adapter);
            let params = trainable_parameters(&mut model);
            let hidden = model.hidden_states(&batch.ids, &batch.attention_mask);
            let select = batch.weights.gt(0.0);
            let value = if let Some(fused) = chunked {
                let lp = token_logprobs(&model, &hidden, &batch.ids, &select, 5);
                let c = loss::sft_coefficients(&lp.gather(&batch.weights), 17.0);
                match fused {
                    true => lp.backward_linear(&c),
                    false => lp.backward(|logp| (logp * &c).sum(Kind::Float)),
                }
            } else {
                let t = batch.ids.size()[1];
                let logits = hidden.matmul(&model.output_weight().tr());
                let logp = logits
                    .narrow(1, 0, t - 1)
                    .log_softmax(-1, Kind::Float)
                    .gather(2, &batch.ids.narrow(1, 1, t - 1).unsqueeze(2), false)
                    .squeeze_dim(2);
                let l = -(logp * batch.weights.narrow(1, 1, t - 1)).sum(Kind::Float) / 17.0;
                l.backward();
                l.double_value(&[])
            };
            let flat: Vec<Tensor> = params.iter().map(|(_, p)| p.grad().reshape([-1])).collect();
            (value, Tensor::cat(&flat, 0))
        };
        let (full, g_full) = grads(None);
        for fused in [false, true] {
            let (chunked, g_chunked) = grads(Some(fused));
            assert!(
                (full - chunked).abs() < 1e-6 * full.abs(),
                "{padding:?}: {full} vs {chunked}"
            );
            let rel = (&g_full - &g_chunked).norm().double_value(&[]) / g_full.norm().double_value(&[]);
            assert!(rel < 1e-5, "{padding:?}, fused {fused}: gradient differs by {rel}");
        }
    }
}

#[test]
fn gradient_checkpointing_gives_the_gradient_of_the_stored_pass_dropout_included() {
    let _rng = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = Transformer::load(&fixture(), Device::Cpu, Kind::Float).unwrap();
    let config = LoraConfig {
        dropout: 0.3,
        ..lora_config()
    };
    let mut adapter = Adapter::init(&mut model, config, "llama", 5);
    for (_, (_, b)) in adapter.modules.iter_mut() {
        *b = Tensor::randn(b.size(), (Kind::Float, Device::Cpu)) * 0.1;
    }
    let seqs = sequences(3, model.config.vocab_size);
    let refs: Vec<&Sequence> = seqs.iter().collect();
    for padding in [Padding::Right, Padding::Left] {
        let batch = Batch::collate(&refs, padding, Device::Cpu);
        let grads = |checkpoint: bool, dropout_seed: i64| {
            let mut model = model_with_adapter(&adapter);
            set_training(&mut model, true);
            let params = trainable_parameters(&mut model);
            let pass = PassOptions {
                dropout_seed,
                checkpoint,
            };
            let hidden = model.training_pass(&batch.ids, &batch.attention_mask, pass);
            let lp = token_logprobs(&model, &hidden.states, &batch.ids, &batch.weights.gt(0.0), 5);
            let value = lp.backward_linear(&loss::sft_coefficients(&lp.gather(&batch.weights), 17.0));
            hidden.finish_backward();
            let flat: Vec<Tensor> = params.iter().map(|(_, p)| p.grad().reshape([-1])).collect();
            (value, Tensor::cat(&flat, 0))
        };
        let (stored, g_stored) = grads(false, 7);
        let (recomputed, g_recomputed) = grads(true, 7);
        assert!(
            (stored - recomputed).abs() <= 1e-6 * stored.abs(),
            "{padding:?}: {stored} vs {recomputed}"
        );
        let rel = |a: &Tensor, b: &Tensor| (a - b).norm().double_value(&[]) / a.norm().double_value(&[]);
        assert!(
            rel(&g_stored, &g_recomputed) < 1e-5,
            "{padding:?}: {}",
            rel(&g_stored, &g_recomputed)
        );
        // Dropout is on: another seed draws other masks, so the comparison above is not vacuous.
        let (_, g_other) = grads(false, 8);
        assert!(
            rel(&g_stored, &g_other) > 1e-3,
            "{padding:?}: the dropout seed changes nothing"
        );
    }
}

#[test]
fn left_and_right_padding_give_each_sequence_its_unpadded_logprobs() {
    let model = Transformer::load(&fixture(), Device::Cpu, Kind::Float).unwrap();
    let _g = tch::no_grad_guard();
    let seqs = sequences(3, model.config.vocab_size);
    let alone: Vec<Tensor> = seqs
        .iter()
        .map(|s| {
            let b = Batch::collate(&[s], Padding::Right, Device::Cpu);
            let h = model.hidden_states(&b.ids, &b.attention_mask);
            token_logprobs(&model, &h, &b.ids, &b.weights.gt(0.0), 64).logp()
        })
        .collect();
    let alone = Tensor::cat(&alone, 0);
    let refs: Vec<&Sequence> = seqs.iter().collect();
    for padding in [Padding::Right, Padding::Left] {
        let b = Batch::collate(&refs, padding, Device::Cpu);
        let h = model.hidden_states(&b.ids, &b.attention_mask);
        let together = token_logprobs(&model, &h, &b.ids, &b.weights.gt(0.0), 64).logp();
        let diff = (&together - &alone).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{padding:?}: {diff}");
    }
}

#[test]
fn a_bf16_base_trains_f32_lora_factors_to_the_f32_losses_within_bf16_precision() {
    let _rng = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = Transformer::load(&fixture(), Device::Cpu, Kind::Float).unwrap();
    let mut adapter = Adapter::init(&mut model, lora_config(), "llama", 11);
    for (_, (_, b)) in adapter.modules.iter_mut() {
        *b = Tensor::randn(b.size(), (Kind::Float, Device::Cpu)) * 0.05;
    }
    let examples: Vec<Example> = sequences(4, model.config.vocab_size)
        .into_iter()
        .map(Example::Sequence)
        .collect();
    let hyper = Hyper {
        epochs: 1,
        learning_rate: 1e-2,
        batch_size: 2,
        micro_batch_size: 2,
        warmup_steps: 0,
        schedule: Schedule::Constant,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        seed: 0,
        chunk: 4,
        gradient_checkpointing: false,
    };
    let losses = |kind: Kind| {
        let mut model = Transformer::load(&fixture(), Device::Cpu, kind).unwrap();
        adapter.attach(&mut model, Attach::Unmerged).unwrap();
        let params = trainable_parameters(&mut model);
        assert!(
            params.iter().all(|(_, p)| p.kind() == Kind::Float),
            "{kind:?}: factors not in f32"
        );
        let tensors: Vec<Tensor> = params.iter().map(|(_, p)| p.shallow_clone()).collect();
        let logs = trainer::train(
            &model,
            &tensors,
            &examples,
            Objective::Sft,
            &hyper,
            None,
            &mut |_, _| Ok(()),
        )
        .unwrap();
        logs.iter().map(|l| l.loss).collect::<Vec<f64>>()
    };
    let (f32_losses, bf16_losses) = (losses(Kind::Float), losses(Kind::BFloat16));
    assert_eq!(f32_losses.len(), 2);
    for (a, b) in f32_losses.iter().zip(&bf16_losses) {
        assert!(
            (a - b).abs() <= 2e-2 * a.abs(),
            "f32 {f32_losses:?} vs bf16 {bf16_losses:?}"
        );
    }
}

#[test]
fn ten_sft_steps_equal_peft_and_transformers() {
    let Some(python) = common::peft_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut model = Transformer::load(&fixture(), Device::Cpu, Kind::Float).unwrap();
    let initial = Adapter::init(&mut model, lora_config(), &fixture().display().to_string(), 7);
    initial.save(&dir.path().join("initial")).unwrap();
    let seqs = sequences(12, model.config.vocab_size);
    // 10 steps of 2 micro-batches of 2 sequences; the last step has a short last micro-batch.
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
        "base": fixture(),
        "adapter": dir.path().join("initial"),
        "sequences": seqs.iter().map(|s| serde_json::json!({"ids": s.ids, "weights": s.weights})).collect::<Vec<_>>(),
        "steps": steps,
        "lr": lr, "weight_decay": weight_decay, "warmup": warmup, "schedule": "linear", "max_grad_norm": max_norm,
    });
    let (reference, theirs) = reference(&python, dir.path(), &spec);

    let mut model = model_with_adapter(&initial);
    set_training(&mut model, true);
    let params = trainable_parameters(&mut model);
    let tensors: Vec<Tensor> = params.iter().map(|(_, p)| p.shallow_clone()).collect();
    let mut opt = AdamW::new(&tensors, weight_decay);
    for (k, step) in steps.iter().enumerate() {
        let n_tokens: usize = step.iter().flatten().map(|&i| seqs[i].target_tokens()).sum();
        let mut step_loss = 0.0;
        for micro in step {
            let refs: Vec<&Sequence> = micro.iter().map(|&i| &seqs[i]).collect();
            let batch = Batch::collate(&refs, Padding::Right, Device::Cpu);
            let hidden = model.hidden_states(&batch.ids, &batch.attention_mask);
            let lp = token_logprobs(&model, &hidden, &batch.ids, &batch.weights.gt(0.0), 4);
            let w = lp.gather(&batch.weights);
            step_loss += lp.backward_linear(&loss::sft_coefficients(&w, n_tokens as f64));
        }
        clip_grad_norm(&tensors, max_norm);
        opt.step(lr * Schedule::Linear.factor(k, warmup, steps.len()));
        let want = reference["losses"][k].as_f64().unwrap();
        assert!(
            (step_loss - want).abs() <= 1e-4 * want.abs(),
            "step {k}: loss {step_loss} vs PEFT {want}"
        );
    }
    let rel = relative_difference(&params, &theirs);
    assert!(rel < 1e-4, "final adapters differ by {rel} (relative norm)");
}

/// The reference script's output for `spec`, and its final adapter.
fn reference(python: &Path, dir: &Path, spec: &serde_json::Value) -> (serde_json::Value, Adapter) {
    std::fs::write(dir.join("spec.json"), spec.to_string()).unwrap();
    let out = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/training_reference.py"))
        .arg(dir.join("spec.json"))
        .arg(dir.join("peft"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        Adapter::load(&dir.join("peft"), Device::Cpu).unwrap(),
    )
}

#[test]
fn one_lpo_step_equals_the_loss_written_out_in_pytorch() {
    let _rng = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let Some(python) = common::peft_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut model = Transformer::load(&fixture(), Device::Cpu, Kind::Float).unwrap();
    let mut initial = Adapter::init(&mut model, lora_config(), &fixture().display().to_string(), 5);
    // A non-zero B, so that A has a gradient too.
    for (_, (_, b)) in initial.modules.iter_mut() {
        *b = Tensor::randn(b.size(), (Kind::Float, Device::Cpu)) * 0.05;
    }
    initial.save(&dir.path().join("initial")).unwrap();
    // Pairs sharing a prompt, whose completions differ in a few tokens.
    let base = sequences(4, model.config.vocab_size);
    let mut examples = Vec::new();
    let mut seqs = Vec::new();
    for s in &base {
        let p = s.weights.iter().position(|w| *w != 0.0).unwrap();
        let (prompt, secure) = s.ids.split_at(p);
        let mut vulnerable = secure.to_vec();
        vulnerable[0] = (vulnerable[0] + 1) % model.config.vocab_size;
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
        "base": fixture(), "adapter": dir.path().join("initial"), "sequences": seqs,
        "steps": [[[0, 1, 2, 3], [4, 5, 6, 7]]], "objective": "lpo",
        "beta": lpo.beta, "gamma": lpo.gamma, "epsilon": lpo.epsilon,
        "lr": lr, "weight_decay": weight_decay, "warmup": 0, "schedule": "linear", "max_grad_norm": max_norm,
    });
    let (want, theirs) = reference(&python, dir.path(), &spec);

    let mut model = Transformer::load(&fixture(), Device::Cpu, Kind::Float).unwrap();
    initial.attach(&mut model, Attach::Unmerged).unwrap();
    let params = trainable_parameters(&mut model);
    let tensors: Vec<Tensor> = params.iter().map(|(_, p)| p.shallow_clone()).collect();
    let hyper = Hyper {
        epochs: 1,
        learning_rate: lr,
        batch_size: examples.len(),
        micro_batch_size: 3,
        warmup_steps: 0,
        // One step: the linear schedule's factor is 1 at step 0, as Python's.
        schedule: secvec_model::train::optim::Schedule::Linear,
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
    let logs = trainer::train(&model, &tensors, &examples, objective, &hyper, None, &mut |_, _| Ok(())).unwrap();
    let want = want["losses"][0].as_f64().unwrap();
    assert!(
        (logs[0].loss - want).abs() <= 1e-4 * want.abs(),
        "loss {} vs PyTorch {want}",
        logs[0].loss
    );
    let rel = relative_difference(&params, &theirs);
    assert!(
        rel < 1e-4,
        "adapters after one LPO step differ by {rel} (relative norm)"
    );
}

/// ‖ours − theirs‖ / ‖theirs‖ over every LoRA factor.
fn relative_difference(params: &[(String, Tensor)], theirs: &Adapter) -> f64 {
    let (mut diff, mut norm) = (0.0, 0.0);
    for (name, p) in params {
        let (module, which) = name.rsplit_once('.').unwrap();
        let (a, b) = &theirs.modules[module];
        let t = if which == "lora_A" { a } else { b };
        diff += (p - t).pow_tensor_scalar(2).sum(Kind::Double).double_value(&[]);
        norm += t.pow_tensor_scalar(2).sum(Kind::Double).double_value(&[]);
    }
    (diff / norm).sqrt()
}
