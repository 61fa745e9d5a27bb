//! Task-vector diagnostics on random adapters of a 7B model's shape (Qwen2.5-Coder-7B: 28
//! layers, hidden 3584, MLP 18944, 4 KV heads of 128), run by model/bench/diagnose_bench.sh.
//! Prints one JSON object: the seconds to load both adapters and to diagnose them.
//!
//!   diagnose_bench RANK DIR    writes two random adapters of rank RANK under DIR, then times
//!                              loading and diagnosing them

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use secvec_model::lora::{Adapter, LoraConfig};
use secvec_model::task_vector::{diagnose, Named};
use tch::{Device, Kind, Tensor};

const LAYERS: usize = 28;
const HIDDEN: i64 = 3584;
const MLP: i64 = 18944;
const KV: i64 = 4 * 128;

fn random(r: i64, seed: i64) -> Adapter {
    tch::manual_seed(seed);
    let mut modules = BTreeMap::new();
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        let shapes = [
            ("self_attn.q_proj", HIDDEN, HIDDEN),
            ("self_attn.k_proj", KV, HIDDEN),
            ("self_attn.v_proj", KV, HIDDEN),
            ("self_attn.o_proj", HIDDEN, HIDDEN),
            ("mlp.gate_proj", MLP, HIDDEN),
            ("mlp.up_proj", MLP, HIDDEN),
            ("mlp.down_proj", HIDDEN, MLP),
        ];
        for (name, out, inp) in shapes {
            let a = Tensor::randn([r, inp], (Kind::Float, Device::Cpu)) * 0.01;
            let b = Tensor::randn([out, r], (Kind::Float, Device::Cpu)) * 0.01;
            modules.insert(format!("{p}.{name}"), (a, b));
        }
    }
    Adapter {
        config: LoraConfig {
            r,
            alpha: 2.0 * r as f64,
            dropout: 0.0,
            ..LoraConfig::default()
        },
        base_model: "qwen2.5-coder-7b-shaped".into(),
        modules,
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (r, dir): (i64, &Path) = (args[1].parse()?, Path::new(&args[2]));
    for (name, seed) in [("secure", 1), ("vulnerable", 2)] {
        if !dir.join(name).join("adapter_model.safetensors").is_file() {
            std::fs::create_dir_all(dir.join(name))?;
            random(r, seed).save(&dir.join(name))?;
        }
    }
    let t = Instant::now();
    let secure = Adapter::load(&dir.join("secure"), Device::Cpu)?;
    let vulnerable = Adapter::load(&dir.join("vulnerable"), Device::Cpu)?;
    let load = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let d = diagnose(&Named::secure(&secure), &Named::vulnerable(&vulnerable))?;
    println!(
        "{}",
        serde_json::json!({"rank": r, "modules": secure.modules.len(), "load_s": load,
                           "diagnose_s": t.elapsed().as_secs_f64(), "cosine": d.all.cosine})
    );
    Ok(())
}
