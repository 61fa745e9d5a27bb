//! LoRA SFT equals PEFT + transformers step by step, and the chunked log-probabilities equal
//! the full ones.

mod common;

use std::path::{Path, PathBuf};

use secvec_model::lora::{Adapter, Attach, LoraConfig};
use secvec_model::train::batch::{Batch, Padding, Sequence};
use secvec_model::train::logprobs::token_logprobs;
use secvec_model::train::optim::Schedule;
use secvec_model::train::peft_parity::{self, lora_config, sequences};
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
            set_training(&model, true);
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
    let Some(reference) = reference() else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = peft_parity::ten_sft_steps(&fixture(), Device::Cpu, &reference, dir.path()).unwrap();
    assert_eq!(c.losses.len(), 10);
    assert!(
        c.loss_difference() <= 1e-4,
        "losses {:?} vs PEFT {:?}",
        c.losses,
        c.reference_losses
    );
    assert!(
        c.adapter_difference < 1e-4,
        "final adapters differ by {} (relative norm)",
        c.adapter_difference
    );
}

#[test]
fn one_lpo_step_equals_the_loss_written_out_in_pytorch() {
    let _rng = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let Some(reference) = reference() else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = peft_parity::one_lpo_step(&fixture(), Device::Cpu, &reference, dir.path()).unwrap();
    assert_eq!(c.losses.len(), 1);
    assert!(
        c.loss_difference() <= 1e-4,
        "loss {:?} vs PyTorch {:?}",
        c.losses,
        c.reference_losses
    );
    assert!(
        c.adapter_difference < 1e-4,
        "adapters after one LPO step differ by {} (relative norm)",
        c.adapter_difference
    );
}

/// The PEFT + transformers side, or a notice (the caller skips).
fn reference() -> Option<peft_parity::Reference> {
    Some(peft_parity::Reference {
        python: common::peft_python()?,
        script: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/training_reference.py"),
    })
}
