//! Scoring generated code on CodeGuard+: post-processing, sandboxed functional tests, security
//! oracles and the joint metrics.

pub mod canary;
pub mod cgroup;
pub mod functional;
pub mod metrics;
pub mod oracle;
pub mod parse_check;
pub mod postprocess;
pub mod reference;
pub mod sandbox;
pub mod seccomp;
pub mod stage;
pub mod zygote;
