//! Losses written in terms of token log-probabilities (see [`super::logprobs`]).

use tch::{Kind, Tensor};

/// SFT (SecVecCoder Eq. 9): the negative log-likelihood of the target tokens, weighted, summed,
/// and divided by `normaliser`: the number of target tokens in the whole optimiser step, so that
/// gradient accumulation gives the gradient of one large batch (transformers' behaviour).
pub fn sft(logp: &Tensor, weights: &Tensor, normaliser: f64) -> Tensor {
    -(logp * weights).sum(Kind::Float) / normaliser
}
