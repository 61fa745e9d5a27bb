//! Scoring generated code on CodeGuard+: metrics, and (to come) sandboxed functional tests and
//! security oracles.

pub mod functional;
pub mod metrics;
pub mod postprocess;
pub mod reference;
pub mod sandbox;
pub mod stage;
