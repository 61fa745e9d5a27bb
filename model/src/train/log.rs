//! The record of a training run, step by step.

/// What one optimiser step did. No wall-clock time: it is written into the stage's output,
/// which must not change when a deterministic stage reruns (the stage's time is in provenance).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StepLog {
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
    pub learning_rate: f64,
    /// Before clipping.
    pub grad_norm: f64,
    pub tokens: usize,
}
