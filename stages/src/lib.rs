//! The stage kinds of secvec.

pub mod model;
pub mod pair;
pub mod report;

use secvec_engine::Registry;

/// Every stage kind this build knows.
pub fn registry() -> Registry {
    Registry::default().with(pair::Pair).with(report::Report)
}
