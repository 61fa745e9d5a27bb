//! Losses written in terms of token log-probabilities (see [`super::logprobs`]).

use tch::{Kind, Tensor};

/// SFT (SecVecCoder Eq. 9) as the coefficients of its log-probabilities (the loss is
/// Σ cₜ log pₜ): the negative log-likelihood of the target tokens, weighted, summed, and divided by
/// `normaliser`, the number of target tokens in the whole optimiser step, so that gradient
/// accumulation gives the gradient of one large batch (transformers' behaviour).
pub fn sft_coefficients(weights: &Tensor, normaliser: f64) -> Tensor {
    -weights / normaliser
}

/// Which adapter a preference loss trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Prefers the secure completion.
    Secure,
    /// Prefers the vulnerable completion.
    Vulnerable,
}

/// How LPO scores a completion from its token log-probabilities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LpoScore {
    /// The paper's Eq. 10: changed tokens' log-probabilities summed, divided by the length.
    #[default]
    Mean,
    /// The reference code's: changed tokens weighted 0.9 and the others 0.1, divided by the
    /// sum of the weights.
    Weighted,
}

/// LPO's hyperparameters; the defaults are SecVecCoder's (ε, β, γ) = (0.05, 10, 5.4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lpo {
    pub beta: f64,
    pub gamma: f64,
    pub epsilon: f64,
    pub score: LpoScore,
}

impl Default for Lpo {
    fn default() -> Self {
        Lpo {
            beta: 10.0,
            gamma: 5.4,
            epsilon: 0.05,
            score: LpoScore::Mean,
        }
    }
}

/// Completion tokens of a batch's sequences, as [`lpo`] and [`safecoder`] read them: for each
/// selected token its log-probability, whether it changed between the pair's sides (m), and
/// which sequence of the batch it belongs to.
pub struct Tokens<'a> {
    pub logp: &'a Tensor,
    pub changed: &'a Tensor,
    pub sequence: &'a Tensor,
    pub sequences: i64,
}

impl Tokens<'_> {
    /// Per-sequence sums of `x` `[n]`, `[sequences]`.
    fn per_sequence(&self, x: &Tensor) -> Tensor {
        Tensor::zeros([self.sequences], (Kind::Float, x.device())).index_add(0, self.sequence, x)
    }
}

/// LPO (SecVecCoder Eqs. 10–12) summed over `pairs` (secure sequence, vulnerable sequence) and
/// divided by `normaliser` (the pairs in the optimiser step):
/// L_sec = −log σ(Δ − γ) − (ε/|c⁺|) Σ (1 − m⁺) log P(c⁺), L_vul = −log σ(−(Δ − γ)) − (ε/|c⁻|) Σ (1 − m⁻) log P(c⁻),
/// with Δ = β (s(c⁺, m⁺) − s(c⁻, m⁻)).
pub fn lpo(p: &Lpo, target: Target, t: &Tokens, pairs: &[(i64, i64)], normaliser: f64) -> Tensor {
    let score = lpo_scores(p, t);
    let unchanged = t.per_sequence(&((1.0 - t.changed) * t.logp)) / t.per_sequence(&t.logp.ones_like());
    let secure = Tensor::from_slice(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()).to_device(t.logp.device());
    let vulnerable = Tensor::from_slice(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()).to_device(t.logp.device());
    let margin = (score.index_select(0, &secure) - score.index_select(0, &vulnerable)) * p.beta - p.gamma;
    let loss = match target {
        Target::Secure => -margin.log_sigmoid() - unchanged.index_select(0, &secure) * p.epsilon,
        Target::Vulnerable => -(-margin).log_sigmoid() - unchanged.index_select(0, &vulnerable) * p.epsilon,
    };
    loss.sum(Kind::Float) / normaliser
}

/// LPO's localised score s(c, m | p) of each sequence (Eq. 10, or the reference's weighting).
pub fn lpo_scores(p: &Lpo, t: &Tokens) -> Tensor {
    let (weights, denominator) = match p.score {
        LpoScore::Mean => (t.changed.shallow_clone(), t.per_sequence(&t.logp.ones_like())),
        LpoScore::Weighted => {
            let w = t.changed * 0.9 + (1.0 - t.changed) * 0.1;
            let d = t.per_sequence(&w);
            (w, d)
        }
    };
    t.per_sequence(&(&weights * t.logp)) / denominator
}

/// The three kinds of SafeCoder training samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SafeCoderSample {
    /// Instruction data: likelihood of the response.
    Instruction,
    /// The side the adapter learns (secure code for SafeCoder itself): likelihood of its
    /// changed tokens.
    Preferred,
    /// The other side: unlikelihood of its changed tokens.
    Dispreferred,
}

/// SafeCoder's loss for one sample (its batches hold one), over its selected tokens (the
/// response, or the changed tokens): the mean negative log-likelihood, or for vulnerable code the
/// mean unlikelihood −log max(1 − p, 1e-5); security samples weighted by `loss_weight`; divided by
/// the accumulation steps.
pub fn safecoder(kind: SafeCoderSample, logp: &Tensor, loss_weight: f64, accumulation: f64) -> Tensor {
    let per_token = match kind {
        SafeCoderSample::Instruction | SafeCoderSample::Preferred => -logp,
        SafeCoderSample::Dispreferred => -(-logp.exp() + 1.0).clamp_min(1e-5).log(),
    };
    let weight = match kind {
        SafeCoderSample::Instruction => 1.0,
        _ => loss_weight,
    };
    per_token.mean(Kind::Float) * weight / accumulation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    fn close(a: &Tensor, b: f64) {
        let a = a.double_value(&[]);
        assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }

    /// A secure completion of 3 tokens (p = .5, .25, .5; the 1st and 3rd changed) and a
    /// vulnerable one of 2 (p = .25, .125; the 2nd changed).
    fn pair() -> (Tensor, Tensor, Tensor) {
        (
            t(&[0.5f32.ln(), 0.25f32.ln(), 0.5f32.ln(), 0.25f32.ln(), 0.125f32.ln()]),
            t(&[1.0, 0.0, 1.0, 0.0, 1.0]),
            Tensor::from_slice(&[0i64, 0, 0, 1, 1]),
        )
    }

    fn log_sigmoid(x: f64) -> f64 {
        -(1.0 + (-x).exp()).ln()
    }

    #[test]
    fn lpo_equals_the_papers_equations_by_hand() {
        let (logp, changed, sequence) = pair();
        let tokens = Tokens {
            logp: &logp,
            changed: &changed,
            sequence: &sequence,
            sequences: 2,
        };
        let p = Lpo::default();
        let (l5, l25, l125) = (0.5f64.ln(), 0.25f64.ln(), 0.125f64.ln());
        let s_pos = (l5 + l5) / 3.0;
        let s_neg = l125 / 2.0;
        let margin = 10.0 * (s_pos - s_neg) - 5.4;
        let secure = -log_sigmoid(margin) - 0.05 * l25 / 3.0;
        let vulnerable = -log_sigmoid(-margin) - 0.05 * l25 / 2.0;
        close(&lpo(&p, Target::Secure, &tokens, &[(0, 1)], 1.0), secure);
        close(&lpo(&p, Target::Vulnerable, &tokens, &[(0, 1)], 2.0), vulnerable / 2.0);
        let weighted = Lpo {
            score: LpoScore::Weighted,
            ..p
        };
        let s_pos = (0.9 * l5 + 0.1 * l25 + 0.9 * l5) / 1.9;
        let s_neg = (0.1 * l25 + 0.9 * l125) / 1.0;
        let margin = 10.0 * (s_pos - s_neg) - 5.4;
        close(
            &lpo(&weighted, Target::Secure, &tokens, &[(0, 1)], 1.0),
            -log_sigmoid(margin) - 0.05 * l25 / 3.0,
        );
    }

    #[test]
    fn safecoder_and_sft_equal_their_definitions_by_hand() {
        let logp = t(&[0.5f32.ln(), 0.25f32.ln()]);
        let (l5, l25) = (0.5f64.ln(), 0.25f64.ln());
        close(
            &safecoder(SafeCoderSample::Instruction, &logp, 4.0, 16.0),
            -(l5 + l25) / 2.0 / 16.0,
        );
        close(
            &safecoder(SafeCoderSample::Preferred, &logp, 4.0, 1.0),
            -4.0 * (l5 + l25) / 2.0,
        );
        close(
            &safecoder(SafeCoderSample::Dispreferred, &logp, 1.0, 1.0),
            -((0.5f64).ln() + (0.75f64).ln()) / 2.0,
        );
        // A token the model is sure of: the unlikelihood is capped, not infinite.
        close(
            &safecoder(SafeCoderSample::Dispreferred, &t(&[0.0]), 1.0, 1.0),
            -(1e-5f64).ln(),
        );
        let sft = (sft_coefficients(&t(&[1.0, 0.5]), 3.0) * &logp).sum(Kind::Float);
        close(&sft, -(l5 + 0.5 * l25) / 3.0);
    }
}
