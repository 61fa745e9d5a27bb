//! The training forward pass over padded batches (no KV cache), with optional gradient
//! checkpointing: only each decoder layer's input is kept, and the layer is run again during the
//! backward pass, as transformers' `gradient_checkpointing_enable` does per decoder layer.

use tch::{Kind, Tensor};

use super::{Attend, Transformer};

/// How a training pass runs.
#[derive(Clone, Copy, Debug)]
pub struct PassOptions {
    /// Layer `l` seeds the LoRA dropout with `dropout_seed + l`, so a layer run again for its
    /// gradient draws the masks of its first run, and checkpointing does not change training.
    /// The seed goes to libtorch's global generator: one training at a time per process.
    pub dropout_seed: i64,
    /// Keep only each layer's input; recompute its activations in [`Hidden::finish_backward`].
    pub checkpoint: bool,
}

/// What every layer of one pass shares: rotary tables and each layer's attention mask.
struct Frame {
    cos: Tensor,
    sin: Tensor,
    /// `None`: causal attention, without a mask tensor.
    masks: Vec<Option<Tensor>>,
    b: i64,
    t: i64,
}

/// The final hidden states of a training pass. With checkpointing, the gradient of the loss
/// reaches the LoRA parameters only once [`Hidden::finish_backward`] has run.
pub struct Hidden<'a> {
    /// `[batch, t, hidden]`, in the autograd graph.
    pub states: Tensor,
    recompute: Option<Recompute<'a>>,
}

struct Recompute<'a> {
    model: &'a Transformer,
    frame: Frame,
    /// Each layer's input, outside the graph.
    inputs: Vec<Tensor>,
    /// The last layer's output as a leaf: the loss's backward leaves its gradient here.
    top: Tensor,
    dropout_seed: i64,
}

impl Transformer {
    /// Final hidden states `[batch, t, hidden]` of padded sequences. `attention_mask` `[batch, t]`
    /// is 1 for tokens and 0 for padding, on either side; positions count only the tokens
    /// before, as transformers derives them from the mask.
    pub fn hidden_states(&self, ids: &Tensor, attention_mask: &Tensor) -> Tensor {
        let frame = self.frame(ids, attention_mask);
        let mut x = Tensor::embedding(&self.embed, ids, -1, false, false);
        for l in 0..self.layers.len() {
            x = self.layer_forward(l, &frame, &x);
        }
        self.norm.forward(&x)
    }

    /// [`Transformer::hidden_states`] for training: dropout seeded per layer, and optionally
    /// gradient checkpointing.
    pub fn training_pass(&self, ids: &Tensor, attention_mask: &Tensor, options: PassOptions) -> Hidden<'_> {
        let frame = self.frame(ids, attention_mask);
        let mut x = Tensor::embedding(&self.embed, ids, -1, false, false);
        let mut inputs = Vec::new();
        for l in 0..self.layers.len() {
            tch::manual_seed(options.dropout_seed.wrapping_add(l as i64));
            if options.checkpoint {
                let _guard = tch::no_grad_guard();
                inputs.push(x.shallow_clone());
                x = self.layer_forward(l, &frame, &x);
            } else {
                x = self.layer_forward(l, &frame, &x);
            }
        }
        if !options.checkpoint {
            return Hidden {
                states: self.norm.forward(&x),
                recompute: None,
            };
        }
        let top = x.detach().set_requires_grad(true);
        Hidden {
            states: self.norm.forward(&top),
            recompute: Some(Recompute {
                model: self,
                frame,
                inputs,
                top,
                dropout_seed: options.dropout_seed,
            }),
        }
    }

    fn frame(&self, ids: &Tensor, attention_mask: &Tensor) -> Frame {
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let positions = (attention_mask.to_kind(Kind::Int64).cumsum(-1, Kind::Int64) - 1).clamp_min(0);
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        let (cos, sin) = (emb.cos().to_kind(self.kind), emb.sin().to_kind(self.kind));
        // With padding only on the right, a token never sees padding under a causal mask (only
        // padding sees tokens, and padding predicts nothing), so the fused causal kernels serve.
        let right_padded = t < 2
            || attention_mask
                .narrow(1, 1, t - 1)
                .le_tensor(&attention_mask.narrow(1, 0, t - 1))
                .all()
                .int64_value(&[])
                != 0;
        let real = attention_mask.to_kind(Kind::Bool);
        let idx = Tensor::arange(t, (Kind::Int64, self.device));
        let (qpos, kpos) = (idx.unsqueeze(1), idx.unsqueeze(0));
        let masks = self
            .layers
            .iter()
            .map(|layer| {
                let window = layer.window.filter(|&w| w < t);
                if right_padded && window.is_none() {
                    return None;
                }
                let causal = kpos.le_tensor(&qpos);
                let visible = match window {
                    Some(w) => causal.logical_and(&kpos.gt_tensor(&(&qpos - w))),
                    None => causal,
                };
                // A padding query that sees no key (left padding) sees itself, so no row of the
                // attention is all masked (which would give NaN, and NaN gradients).
                Some(
                    visible
                        .logical_and(&real.view([b, 1, 1, t]))
                        .logical_or(&kpos.eq_tensor(&qpos)),
                )
            })
            .collect();
        Frame { cos, sin, masks, b, t }
    }

    // `x += …` would add in place, which autograd cannot differentiate through.
    #[allow(clippy::assign_op_pattern)]
    fn layer_forward(&self, l: usize, frame: &Frame, x: &Tensor) -> Tensor {
        let layer = &self.layers[l];
        let (b, t) = (frame.b, frame.t);
        let h = layer.input_norm.forward(x);
        let (q, k, v) = self.qkv(layer, &h, &frame.cos, &frame.sin, b, t);
        let mask = match &frame.masks[l] {
            Some(m) => Attend::Mask(m),
            None => Attend::Causal,
        };
        let x = x + self.attend(layer, &q, &k, &v, mask, b, t);
        let h = layer.post_norm.forward(&x);
        &x + self.mlp(&layer.mlp, &h)
    }
}

impl Hidden<'_> {
    /// Carries the gradient the loss left on the last layer's output down through every layer,
    /// running each again from its kept input. Call it after the loss's `backward`; without
    /// checkpointing there is nothing to do.
    pub fn finish_backward(self) {
        let Some(r) = self.recompute else { return };
        let mut grad = r.top.grad();
        for l in (0..r.inputs.len()).rev() {
            if !grad.defined() {
                return;
            }
            // The first layer's input is the frozen embedding: no gradient to carry further.
            let x = r.inputs[l].detach().set_requires_grad(l > 0);
            tch::manual_seed(r.dropout_seed.wrapping_add(l as i64));
            let y = r.model.layer_forward(l, &r.frame, &x);
            // d/dy Σ y·g = g: the layer's backward from the gradient its output received.
            (y * &grad).sum(Kind::Float).backward();
            grad = if l > 0 { x.grad() } else { Tensor::new() };
        }
    }
}
