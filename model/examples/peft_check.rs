//! Training against PEFT + transformers on a device, for the GPU bundle (scripts/gpu-bundle.sh):
//!
//!   peft_check sft|lpo BASE PYTHON REFERENCE_SCRIPT WORK_DIR
//!
//! `sft`: ten LoRA SFT steps; `lpo`: one LPO step (see secvec_model::train::peft_parity).
//! DEVICE=cuda runs both sides on the first GPU. Prints the comparison as one JSON object.

use std::path::PathBuf;

use anyhow::{bail, Context};
use secvec_model::train::peft_parity::{self, Reference};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, what, base, python, script, work] = &args[..] else {
        bail!("usage: peft_check sft|lpo BASE PYTHON REFERENCE_SCRIPT WORK_DIR");
    };
    let device = secvec_model::device::parse_device(&std::env::var("DEVICE").unwrap_or("cpu".into()))?;
    let reference = Reference {
        python: python.into(),
        script: script.into(),
    };
    let (base, work) = (PathBuf::from(base), PathBuf::from(work));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let comparison = match what.as_str() {
        "sft" => peft_parity::ten_sft_steps(&base, device, &reference, &work)?,
        "lpo" => peft_parity::one_lpo_step(&base, device, &reference, &work)?,
        other => bail!("unknown check {other}: sft or lpo"),
    };
    let mut out = serde_json::to_value(&comparison)?;
    out["loss_difference"] = comparison.loss_difference().into();
    println!("{out}");
    Ok(())
}
