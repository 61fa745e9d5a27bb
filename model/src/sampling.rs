//! Turning logits into tokens: temperature, top-p (as transformers' `TopPLogitsWarper`), and
//! seeded per-sample draws that do not depend on how samples are batched.

use rand::{Rng, SeedableRng};
use tch::{Kind, Tensor};

/// Logits `[batch, vocab]` with every token outside the top-p nucleus set to -inf, exactly as
/// transformers does it: sort ascending, drop tokens whose cumulative probability is at most
/// `1 - top_p`, always keep the most likely token.
pub fn top_p_filter(logits: &Tensor, top_p: f64) -> Tensor {
    if top_p >= 1.0 {
        return logits.shallow_clone();
    }
    let (sorted, indices) = logits.sort(-1, false);
    let cumulative = sorted.softmax(-1, Kind::Float).cumsum(-1, Kind::Float);
    let remove_sorted = cumulative.le(1.0 - top_p);
    let vocab = remove_sorted.size()[1];
    let _ = remove_sorted.narrow(1, vocab - 1, 1).fill_(0);
    let remove = remove_sorted.scatter(1, &indices, &remove_sorted);
    logits.masked_fill(&remove, f64::NEG_INFINITY)
}

/// A random stream per sample, seeded from the run seed and the sample's identity.
pub fn sample_rng(seed: u64, prompt: u64, sample: u64) -> rand::rngs::StdRng {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(&prompt.to_le_bytes());
    h.update(&sample.to_le_bytes());
    rand::rngs::StdRng::from_seed(*h.finalize().as_bytes())
}

/// Next token of each row of `logits` `[batch, vocab]`. Temperature 0 is greedy (argmax).
pub fn next_tokens(logits: &Tensor, temperature: f64, top_p: f64, rngs: &mut [&mut rand::rngs::StdRng]) -> Vec<i64> {
    if temperature <= 0.0 {
        return Vec::<i64>::try_from(logits.argmax(-1, false)).expect("argmax gives int64");
    }
    let filtered = top_p_filter(&(logits.to_kind(Kind::Float) / temperature), top_p);
    let probs = filtered.softmax(-1, Kind::Float).to_device(tch::Device::Cpu);
    let vocab = probs.size()[1] as usize;
    let flat = Vec::<f32>::try_from(probs.flatten(0, -1)).expect("f32 probabilities");
    flat.chunks(vocab)
        .zip(rngs.iter_mut())
        .map(|(row, rng)| {
            let total: f32 = row.iter().sum();
            let mut u: f32 = rng.random::<f32>() * total;
            for (i, &p) in row.iter().enumerate() {
                if u < p {
                    return i as i64;
                }
                u -= p;
            }
            row.iter().rposition(|&p| p > 0.0).unwrap_or(0) as i64
        })
        .collect()
}
