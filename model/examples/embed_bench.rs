//! Sentence-embedding throughput of the BERT encoder, for model/bench/embed_vs_sentence_transformers.sh:
//!
//!   embed_bench MODEL_DIR TEXTS.json BATCH
//!
//! Prints seconds to load and to embed every text (a JSON list of strings).

use std::time::Instant;

use secvec_model::encoder::Encoder;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let texts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&args[2])?)?;
    let batch: usize = args[3].parse()?;
    let t = Instant::now();
    let encoder = Encoder::load(std::path::Path::new(&args[1]), tch::Device::Cpu)?;
    let load = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = encoder.embed(&texts, batch)?;
    let embed = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"texts": texts.len(), "dimension": out.size()[1], "load_s": load, "embed_s": embed})
    );
    Ok(())
}
