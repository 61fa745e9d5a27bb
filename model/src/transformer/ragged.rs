//! One decoding step for rows that share nothing: each row (a sample) has its own KV cache and
//! position, so samples of different prompts, started at different times, decode together
//! (continuous batching).
//!
//! A row's logits are the same bits whatever rows decode beside it, and in whatever order:
//! - linear layers multiply at least [`MIN_ROWS`] rows, padding with dummy rows. Below about a
//!   dozen rows libtorch's CPU kernels change with the row count; from there on a row's result
//!   does not depend on it, nor on its neighbours (bf16 never depends on it);
//! - attention runs row by row over the row's own keys, since batched attention's results
//!   depend on the batch;
//! - norms, rotary embeddings and sampling work row by row.
//!
//! `model/tests/generation.rs` checks the bits row by row (and fails without the padding);
//! `tests/models.rs` checks whole samples through `generate` with batch sizes 1, 7 and 64 and
//! shuffled prompts.

use tch::{Kind, Tensor};

use super::{Attend, KvCache, ModelError, Transformer};

/// The fewest rows a linear layer multiplies in [`Transformer::decode_rows`].
pub const MIN_ROWS: i64 = 16;

impl Transformer {
    /// Logits `[rows, vocab]` (f32) of the token after `ids[i]`, which follows the positions
    /// cached in `caches[i]` and is added to them.
    // `x += …` would add in place, which autograd cannot differentiate through when training.
    #[allow(clippy::assign_op_pattern)]
    pub fn decode_rows(&self, ids: &[i64], caches: &mut [&mut KvCache]) -> Result<Tensor, ModelError> {
        assert_eq!(ids.len(), caches.len(), "one cache per row");
        if let Some(full) = caches.iter().find(|c| c.len + 1 > c.capacity()) {
            return Err(ModelError::CacheFull {
                needed: full.len + 1,
                capacity: full.capacity(),
            });
        }
        let rows = ids.len() as i64;
        let m = rows.max(MIN_ROWS);
        let c = &self.config;
        let (nh, d) = (c.num_heads, c.head_dim);
        let mut padded = ids.to_vec();
        padded.resize(m as usize, 0);
        let mut positions: Vec<f32> = caches.iter().map(|c| c.len as f32).collect();
        positions.resize(m as usize, 0.0);
        let ids = Tensor::from_slice(&padded).to_device(self.device).view([m, 1]);
        let freqs = Tensor::from_slice(&positions)
            .to_device(self.device)
            .outer(&self.inv_freq);
        let emb = Tensor::cat(&[&freqs, &freqs], -1).view([m, 1, 1, -1]);
        let (cos, sin) = (emb.cos().to_kind(self.kind), emb.sin().to_kind(self.kind));
        let mut x = Tensor::embedding(&self.embed, &ids, -1, false, false);
        for (l, layer) in self.layers.iter().enumerate() {
            let h = layer.input_norm.forward(&x);
            let (q, k, v) = self.qkv(layer, &h, &cos, &sin, m, 1);
            let mut heads = Vec::with_capacity(m as usize);
            for (i, cache) in caches.iter_mut().enumerate() {
                let i = i as i64;
                let offset = cache.len;
                let (keys, values) = cache.store(l, &k.narrow(0, i, 1), &v.narrow(0, i, 1));
                let mask = self.cached_mask(layer, offset, 1);
                let attend = mask.as_ref().map(Attend::Mask).unwrap_or(Attend::All);
                heads.push(self.heads(&q.narrow(0, i, 1), &keys, &values, attend));
            }
            if m > rows {
                heads.push(Tensor::zeros([m - rows, nh, 1, d], (self.kind, self.device)));
            }
            let out = Tensor::cat(&heads, 0).transpose(1, 2).reshape([m, 1, nh * d]);
            x = x + layer.attn.o.forward(&out);
            let h = layer.post_norm.forward(&x);
            x = x + self.mlp(&layer.mlp, &h);
        }
        for cache in caches.iter_mut() {
            cache.len += 1;
        }
        let x = self.norm.forward(&x);
        let logits = x.linear(self.output_weight(), None::<&Tensor>).to_kind(Kind::Float);
        Ok(logits.view([m, -1]).narrow(0, 0, rows))
    }
}
