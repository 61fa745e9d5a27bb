//! Sequences to train on, padded into batches.

use tch::{Device, Kind, Tensor};

/// One sequence: its token ids and, for each position, the weight of predicting that token from
/// the ones before it (0 for the prompt and for position 0, which nothing predicts).
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    pub ids: Vec<i64>,
    pub weights: Vec<f32>,
}

impl Sequence {
    /// `prompt` then `completion`, with the loss on the completion only.
    pub fn completion(prompt: &[i64], completion: &[i64]) -> Sequence {
        let ids: Vec<i64> = prompt.iter().chain(completion).copied().collect();
        let weights = (0..ids.len()).map(|i| f32::from(u8::from(i >= prompt.len()))).collect();
        Sequence { ids, weights }
    }

    /// Positions whose prediction carries weight.
    pub fn target_tokens(&self) -> usize {
        self.weights.iter().skip(1).filter(|w| **w != 0.0).count()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    /// Tokens first, padding after (training's usual side).
    #[default]
    Right,
    Left,
}

/// Sequences padded to one length.
pub struct Batch {
    /// `[b, t]`; padding holds token 0.
    pub ids: Tensor,
    /// `[b, t]`, 1 for tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// `[b, t]` f32: the weight of predicting each token (0 on padding and position 0).
    pub weights: Tensor,
}

impl Batch {
    pub fn collate(seqs: &[&Sequence], padding: Padding, device: Device) -> Batch {
        let t = seqs.iter().map(|s| s.ids.len()).max().unwrap_or(0);
        let (mut ids, mut mask, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        for s in seqs {
            let pad = t - s.ids.len();
            let (before, after) = match padding {
                Padding::Right => (0, pad),
                Padding::Left => (pad, 0),
            };
            let n = s.ids.len();
            ids.extend(
                std::iter::repeat_n(0i64, before)
                    .chain(s.ids.iter().copied())
                    .chain(std::iter::repeat_n(0, after)),
            );
            mask.extend(
                std::iter::repeat_n(0i64, before)
                    .chain(std::iter::repeat_n(1, n))
                    .chain(std::iter::repeat_n(0, after)),
            );
            weights.extend(
                std::iter::repeat_n(0f32, before + 1)
                    .chain(s.weights.iter().skip(1).copied())
                    .chain(std::iter::repeat_n(0.0, after)),
            );
        }
        let b = seqs.len() as i64;
        let shape = [b, t as i64];
        Batch {
            ids: Tensor::from_slice(&ids).view(shape).to_device(device),
            attention_mask: Tensor::from_slice(&mask).view(shape).to_device(device),
            weights: Tensor::from_slice(&weights)
                .view(shape)
                .to_kind(Kind::Float)
                .to_device(device),
        }
    }
}
