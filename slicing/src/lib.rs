//! Security-focused program slicing (Rescue §2.1.2): a fix's deleted lines are the points of
//! interest in the vulnerable version and its added lines in the secure one; each version's
//! program dependence graph (data and control dependence between statements, from tree-sitter)
//! is sliced backward and forward from them within a hop limit, and each slice is completed with
//! the other's context lines so the two stay parallel. The same parser extracts API calls
//! ([`calls`]), which `secvec-parse` answers for untrusted code in the sandbox.

pub mod calls;
pub mod pdg;
pub mod slice;
mod syntax;

pub use calls::api_calls;
pub use slice::{slice_fix, Fix, SlicedFix};
