//! AdamW, gradient clipping and learning-rate schedules, with PyTorch's and transformers'
//! arithmetic (the parity tests compare them step by step).

use tch::{Kind, Tensor};

/// AdamW with decoupled weight decay (`torch.optim.AdamW`, no amsgrad).
pub struct AdamW {
    params: Vec<Tensor>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    step: i32,
}

impl AdamW {
    pub fn new(params: &[Tensor], weight_decay: f64) -> AdamW {
        let zeros = || params.iter().map(Tensor::zeros_like).collect::<Vec<_>>();
        AdamW {
            params: params.iter().map(Tensor::shallow_clone).collect(),
            exp_avg: zeros(),
            exp_avg_sq: zeros(),
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            step: 0,
        }
    }

    /// One update with learning rate `lr` from the accumulated gradients, which it then zeroes.
    pub fn step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let (b1, b2) = self.betas;
        let bias1 = 1.0 - b1.powi(self.step);
        let bias2 = 1.0 - b2.powi(self.step);
        for ((p, m), v) in self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
            let _ = m.g_mul_scalar_(b1);
            let _ = m.g_add_(&(&g * (1.0 - b1)));
            let _ = v.g_mul_scalar_(b2);
            let _ = v.g_add_(&(&g * &g * (1.0 - b2)));
            let denom = v.sqrt() / bias2.sqrt() + self.eps;
            let _ = p.g_add_(&(&*m / denom * (-lr / bias1)));
            p.zero_grad();
        }
    }

    /// The optimiser's state, for checkpoints: step, then first and second moments.
    pub fn state(&self) -> (i32, &[Tensor], &[Tensor]) {
        (self.step, &self.exp_avg, &self.exp_avg_sq)
    }

    /// Puts back a state [`AdamW::state`] gave.
    pub fn restore(&mut self, step: i32, exp_avg: Vec<Tensor>, exp_avg_sq: Vec<Tensor>) {
        self.step = step;
        self.exp_avg = exp_avg;
        self.exp_avg_sq = exp_avg_sq;
    }
}

/// Scales the gradients so that their global 2-norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    let _guard = tch::no_grad_guard();
    let grads: Vec<Tensor> = params.iter().map(Tensor::grad).filter(Tensor::defined).collect();
    if grads.is_empty() {
        return 0.0;
    }
    let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(Kind::Float)).collect();
    let total = Tensor::stack(&norms, 0).norm();
    // As torch: the factor is applied even when it is 1.
    let coef = (Tensor::from(max_norm) / (&total + 1e-6)).clamp_max(1.0);
    for mut g in grads {
        let _ = g.g_mul_(&coef.to_kind(g.kind()));
    }
    total.double_value(&[])
}

/// Learning-rate schedules as transformers defines them: a linear warmup over `warmup` steps,
/// then linear decay to 0 or a half-cosine to 0 at `total` steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Linear,
    Cosine,
    Constant,
}

impl Schedule {
    /// The factor on the base learning rate at optimiser step `step` (0-based).
    pub fn factor(self, step: usize, warmup: usize, total: usize) -> f64 {
        if step < warmup {
            return step as f64 / warmup.max(1) as f64;
        }
        let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
        match self {
            Schedule::Linear => ((total as f64 - step as f64) / (total.saturating_sub(warmup)).max(1) as f64).max(0.0),
            Schedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
            Schedule::Constant => 1.0,
        }
    }
}
