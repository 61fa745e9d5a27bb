//! Scoring generated code, the project's trust boundary: untrusted programs and the tools that
//! parse them run in the sandbox (namespaces, seccomp, cgroups, a zygote per scenario), their
//! functional tests and the security oracles (the C pattern checks included) judge them, and
//! the joint metrics (pass@k, sec-pass@k, sec@k_pass, SVEN-SR) are computed from the verdicts.

pub mod bootstrap;
pub mod canary;
pub mod cgroup;
pub mod correlation;
pub mod functional;
pub mod metrics;
pub mod oracle;
pub mod paired;
pub mod parse;
pub mod parse_check;
pub mod postprocess;
pub mod sandbox;
pub mod seccomp;
pub mod toolchain;
pub mod zygote;
