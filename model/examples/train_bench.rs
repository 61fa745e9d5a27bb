//! LoRA SFT training throughput of the model stack, run by model/bench/train_vs_peft.sh beside
//! the same training in PEFT + transformers (train_peft_bench.py). Prints one JSON object.
//!
//!   train_bench DIR BATCH SEQ STEPS [checkpoint] [device=cuda] [dtype=bf16]
//!       SFT steps of BATCH random sequences of SEQ tokens (LoRA r 16, alpha 32, dropout 0.1,
//!       every projection; the first step is a warm-up, not timed), with gradient
//!       checkpointing when asked, on CPU in f32 unless told otherwise

use std::path::Path;
use std::time::Instant;

use secvec_model::lora::{Adapter, Attach, LoraConfig};
use secvec_model::train::batch::{Batch, Padding, Sequence};
use secvec_model::train::logprobs::token_logprobs;
use secvec_model::train::optim::{clip_grad_norm, AdamW};
use secvec_model::train::{loss, set_training, trainable_parameters};
use secvec_model::transformer::{PassOptions, Transformer};
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(&args[1]);
    let (batch, seq, steps): (usize, usize, usize) = (args[2].parse()?, args[3].parse()?, args[4].parse()?);
    let option = |key: &str| args[5..].iter().find_map(|a| a.strip_prefix(key)).map(String::from);
    let device = secvec_model::device::parse_device(&option("device=").unwrap_or("cpu".into()))?;
    let kind = match option("dtype=").as_deref() {
        None | Some("f32") => Kind::Float,
        Some("bf16") => Kind::BFloat16,
        Some(other) => anyhow::bail!("dtype {other}: use f32 or bf16"),
    };
    let checkpoint = args[5..].iter().any(|a| a == "checkpoint");
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let mut model = Transformer::load(dir, device, kind)?;
    let adapter = Adapter::init(&mut model, LoraConfig::default(), "bench", 0);
    adapter.attach(&mut model, Attach::Unmerged)?;
    set_training(&model, true);
    let params: Vec<Tensor> = trainable_parameters(&mut model).into_iter().map(|(_, t)| t).collect();
    let mut opt = AdamW::new(&params, 0.0);
    let vocab = model.config.vocab_size;
    // The same pseudo-random tokens as the Python side: a prompt of a quarter, the loss on the rest.
    let sequences: Vec<Sequence> = (0..batch)
        .map(|b| {
            let ids: Vec<i64> = (0..seq).map(|t| ((b * 7919 + t * 104729) as i64) % vocab).collect();
            Sequence::completion(&ids[..seq / 4], &ids[seq / 4..])
        })
        .collect();
    let refs: Vec<&Sequence> = sequences.iter().collect();
    let tokens: usize = sequences.iter().map(Sequence::target_tokens).sum();
    let mut timed = 0.0;
    for step in 0..steps {
        let t = Instant::now();
        let b = Batch::collate(&refs, Padding::Right, device);
        let pass = PassOptions {
            dropout_seed: step as i64,
            checkpoint,
        };
        let hidden = model.training_pass(&b.ids, &b.attention_mask, pass);
        let lp = token_logprobs(&model, &hidden.states, &b.ids, &b.weights.gt(0.0), 256);
        let w = lp.gather(&b.weights);
        lp.backward_linear(&loss::sft_coefficients(&w, tokens as f64));
        hidden.finish_backward();
        clip_grad_norm(&params, 1.0);
        opt.step(1e-4);
        sync();
        if step > 0 {
            timed += t.elapsed().as_secs_f64();
        }
    }
    let timed_steps = steps.saturating_sub(1).max(1);
    println!(
        "{}",
        serde_json::json!({
            "steps": timed_steps,
            "seconds_per_step": timed / timed_steps as f64,
            "tokens_per_s": (batch * seq * timed_steps) as f64 / timed,
        })
    );
    Ok(())
}
