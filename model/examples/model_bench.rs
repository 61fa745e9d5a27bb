//! Measurements of the model stack, run by model/bench/generate_vs_transformers.sh beside the
//! same measurements in transformers. Prints one JSON object.
//!
//!   model_bench throughput DIR N NEW   n samples of one prompt, NEW new tokens each
//!   model_bench latency DIR NEW        prefill + first token, then steady decode, batch 1
//!   model_bench load DIR               load the weights (for peak RSS)
//!   model_bench logits DIR             the prompt's last-position logits (parity on a device)
//!
//! DEVICE=cuda runs on the first GPU, DTYPE=bf16 in bfloat16 (default: cpu, f32).

use std::path::Path;
use std::time::Instant;

use secvec_model::generate::{generate, Batching, Request, Sampling};
use secvec_model::sampling::next_tokens;
use secvec_model::tokenizer::TextTokenizer;
use secvec_model::transformer::Transformer;
use tch::{Device, Kind, Tensor};

const PROMPT: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nCreate a Python function for this problem: Read a file from the uploads folder.\n\n### Response:\nimport os\n\ndef read_upload(name):\n";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(&args[2]);
    let _g = tch::no_grad_guard();
    // Through the device parser, which loads libtorch's CUDA backend first.
    let device = secvec_model::device::parse_device(&std::env::var("DEVICE").unwrap_or("cpu".into()))?;
    let t0 = Instant::now();
    let kind = match std::env::var("DTYPE").as_deref() {
        Ok("bf16") => Kind::BFloat16,
        _ => Kind::Float,
    };
    let model = Transformer::load(dir, device, kind)?;
    let load_s = t0.elapsed().as_secs_f64();
    let tok = TextTokenizer::load(dir, model.config.vocab_size)?;
    let prompt = tok.encode(PROMPT)?;
    let out = match args[1].as_str() {
        "throughput" => {
            let (n, new): (usize, usize) = (args[3].parse()?, args[4].parse()?);
            let s = Sampling {
                n,
                temperature: 0.8,
                top_p: 0.95,
                max_new_tokens: new,
                stop: vec![],
                seed: 0,
            };
            // Untimed first, as on the transformers side: a GPU's first calls set up its
            // libraries and load kernels.
            let warm = Sampling {
                max_new_tokens: 4,
                ..s.clone()
            };
            generate(&model, &tok, Request::new(&prompt, 0), &warm, Batching::rows(n), &[])?;
            let t = Instant::now();
            let samples = generate(&model, &tok, Request::new(&prompt, 0), &s, Batching::rows(n), &[])?;
            let secs = t.elapsed().as_secs_f64();
            let tokens: usize = samples.iter().map(|c| c.completion_tokens).sum();
            serde_json::json!({"samples": samples.len(), "new_tokens": tokens, "seconds": secs, "tokens_per_s": tokens as f64 / secs})
        }
        "latency" => {
            let new: usize = args[3].parse()?;
            let mut best_prefill = f64::MAX;
            let mut best_decode = 0.0f64;
            for _ in 0..5 {
                let mut cache = model.new_cache(1, (prompt.len() + new + 1) as i64);
                let t = Instant::now();
                let logits = model.forward(&Tensor::from_slice(&prompt).unsqueeze(0), &mut cache)?;
                let mut next = next_tokens(&logits.select(1, -1), 0.0, 1.0, &mut [])[0];
                best_prefill = best_prefill.min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                for _ in 0..new {
                    let logits = model.forward(&Tensor::from_slice(&[next]).unsqueeze(0), &mut cache)?;
                    next = next_tokens(&logits.select(1, -1), 0.0, 1.0, &mut [])[0];
                }
                best_decode = best_decode.max(new as f64 / t.elapsed().as_secs_f64());
            }
            serde_json::json!({"prompt_tokens": prompt.len(), "prefill_first_token_ms": best_prefill * 1e3, "decode_tokens_per_s": best_decode})
        }
        "load" => serde_json::json!({"load_seconds": load_s}),
        "logits" => {
            let mut cache = model.new_cache(1, prompt.len() as i64 + 1);
            let logits = model.forward(&Tensor::from_slice(&prompt).unsqueeze(0), &mut cache)?;
            let last = logits
                .select(1, -1)
                .squeeze()
                .to_kind(Kind::Float)
                .to_device(Device::Cpu);
            serde_json::json!({"logits": Vec::<f32>::try_from(&last)?})
        }
        other => anyhow::bail!("unknown mode {other}"),
    };
    println!("{out}");
    Ok(())
}
