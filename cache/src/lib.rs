//! Content-addressed cache: artifact trees stored by the blake3 digest of their contents, and an
//! action cache mapping stage keys to output digests.
//!
//! Layout under the cache root:
//! - `store/<digest>/`      committed artifact trees (files read-only)
//! - `ac/<xx>/<key>.json`   action entries, written last by atomic rename
//! - `stamps/<digest>.json`  stamps of a stored tree's files, taken at commit (see [`TreeStamps`])
//! - `stat.json`            content digests of `{path:}` inputs by stamp (see [`StatCache`])
//! - `records/<scope>/<name>.json` latest entry per named stage (used to explain reruns)
//! - `locks/<key>.lock`     per-key kernel locks so concurrent processes compute a key once
//! - `tmp/<id>/`            staging directories, each held by a kernel lock while in use
//! - `scratch/<key>/`       a stage's checkpoints, kept across failed attempts until it commits
//! - `memo/<xx>/<key>`      responses of expensive calls by request (see [`Memo`]); gc keeps them
//! - `LOCK`                 shared by runs, exclusive for garbage collection

mod atomic;
mod digest;
mod memo;
mod stamp;
mod store;

pub use atomic::write_atomic;
pub use digest::{hash_file, hash_path, Digest, DigestParseError};
pub use memo::Memo;
pub use stamp::{now_ns, Stamp, StatCache, TreeStamps, RACY_NS};
pub use store::{
    canonical_json, key_of, ActionEntry, Cache, CacheError, Found, GcReport, KeyLock, Problem, Staging, VerifyReport,
};
