//! Log-probabilities of chosen tokens from the model's hidden states, a chunk of positions at a
//! time: the output projection is applied only where a loss needs it, so `[batch, seq, vocab]`
//! f32 logits never exist (as TRL's chunked loss). The gradient of any loss written in terms of
//! these log-probabilities goes back the same way, chunk by chunk, using
//! d log p(y) / d h = Wᵀ (onehot(y) − softmax(W h)).

use tch::{Kind, Tensor};

use crate::transformer::Transformer;

pub struct TokenLogprobs {
    /// The hidden states that predict the selected tokens, `[n, hidden]`, in the autograd graph.
    rows: Tensor,
    /// `[n]` token ids.
    targets: Tensor,
    /// The output projection `[vocab, hidden]`.
    head: Tensor,
    /// Flat indices of the selected positions in `[b, t - 1]` (position `p` predicts token `p + 1`).
    index: Tensor,
    t: i64,
    chunk: i64,
}

/// Log-probabilities of the tokens `ids[b, t]` where `select[b, t]` is true (t ≥ 1), each
/// predicted from the hidden state before it.
pub fn token_logprobs(
    model: &Transformer,
    hidden: &Tensor,
    ids: &Tensor,
    select: &Tensor,
    chunk: i64,
) -> TokenLogprobs {
    let (t, h) = (hidden.size()[1], hidden.size()[2]);
    let index = select.narrow(1, 1, t - 1).reshape([-1]).nonzero().squeeze_dim(1);
    let rows = hidden.narrow(1, 0, t - 1).reshape([-1, h]).index_select(0, &index);
    let targets = ids.narrow(1, 1, t - 1).reshape([-1]).index_select(0, &index);
    TokenLogprobs {
        rows,
        targets,
        head: model.output_weight().shallow_clone(),
        index,
        t,
        chunk: chunk.max(1),
    }
}

impl TokenLogprobs {
    /// The log-probabilities `[n]` (f32, outside the graph).
    pub fn logp(&self) -> Tensor {
        let _guard = tch::no_grad_guard();
        let parts: Vec<Tensor> = self
            .chunks()
            .map(|(start, len)| {
                self.logits(start, len)
                    .log_softmax(-1, Kind::Float)
                    .gather(1, &self.targets.narrow(0, start, len).unsqueeze(1), false)
                    .squeeze_dim(1)
            })
            .collect();
        match parts.is_empty() {
            true => Tensor::zeros([0], (Kind::Float, self.rows.device())),
            false => Tensor::cat(&parts, 0),
        }
    }

    pub fn len(&self) -> i64 {
        self.targets.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A per-position tensor `[b, t]` (e.g. weights or masks) at the selected tokens, `[n]`.
    pub fn gather(&self, per_position: &Tensor) -> Tensor {
        per_position
            .narrow(1, 1, self.t - 1)
            .reshape([-1])
            .index_select(0, &self.index)
    }

    /// Which sequence of the batch each selected token belongs to, `[n]`.
    pub fn sequence(&self) -> Tensor {
        self.index.divide_scalar_mode(self.t - 1, "floor")
    }

    fn chunks(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let n = self.len();
        (0..n)
            .step_by(self.chunk as usize)
            .map(move |s| (s, self.chunk.min(n - s)))
    }

    fn logits(&self, start: i64, len: i64) -> Tensor {
        self.rows
            .narrow(0, start, len)
            .detach()
            .to_kind(Kind::Float)
            .matmul(&self.head.to_kind(Kind::Float).tr())
    }

    /// Computes `loss` from the log-probabilities and accumulates its gradient into the model's
    /// trainable parameters. Returns the loss. Two passes over the output projection: one for
    /// the log-probabilities, one for the gradient once the loss has said what it needs.
    pub fn backward(&self, loss: impl FnOnce(&Tensor) -> Tensor) -> f64 {
        let leaf = self.logp().set_requires_grad(true);
        let value = loss(&leaf);
        if self.is_empty() || !value.requires_grad() {
            return value.double_value(&[]);
        }
        value.backward();
        let dlogp = leaf.grad();
        self.carry_back(&dlogp, false);
        value.double_value(&[])
    }

    /// For a loss Σ cₜ log pₜ with known coefficients (NLL, SFT): the loss and its gradient in
    /// one pass over the output projection. Returns the loss.
    pub fn backward_linear(&self, coefficients: &Tensor) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        self.carry_back(coefficients, true).unwrap_or(0.0)
    }

    /// Accumulates the gradient of a loss whose derivative in each log-probability is `dlogp`;
    /// with `value`, also returns Σ dlogp · log p from the same logits.
    fn carry_back(&self, dlogp: &Tensor, value: bool) -> Option<f64> {
        let mut total = 0.0;
        let grad_rows = {
            let _guard = tch::no_grad_guard();
            let head = self.head.to_kind(Kind::Float);
            let parts: Vec<Tensor> = self
                .chunks()
                .map(|(start, len)| {
                    let c = dlogp.narrow(0, start, len).unsqueeze(1);
                    let targets = self.targets.narrow(0, start, len).unsqueeze(1);
                    let log_probs = self.logits(start, len).log_softmax(-1, Kind::Float);
                    if value {
                        total += (log_probs.gather(1, &targets, false) * &c)
                            .sum(Kind::Double)
                            .double_value(&[]);
                    }
                    let g = -(log_probs.exp() * &c);
                    g.scatter_add(1, &targets, &c).matmul(&head)
                })
                .collect();
            Tensor::cat(&parts, 0).to_kind(self.rows.kind())
        };
        (&self.rows * grad_rows).sum(Kind::Float).backward();
        value.then_some(total)
    }
}
