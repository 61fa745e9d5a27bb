//! `import-gguf`'s work: dequantise the GGUF and write it as an HF model directory.
//! Linked into `secvec-worker` alone (see `worker/src/lib.rs`).

use secvec_model::gguf::{hf::write_hf, Gguf};
use secvec_stage::StageContext;
use secvec_stages::import_gguf::ImportGgufParams;

pub fn run(_: &ImportGgufParams, ctx: &StageContext) -> anyhow::Result<()> {
    let gguf = Gguf::open(&ctx.required("gguf")?.path)?;
    write_hf(&gguf, ctx.out_dir())?;
    Ok(())
}
