//! `scores`: the scorer's verdict on every distinct program (`judged.jsonl`), beside its
//! `results.json`. The row type is the scorer's own (`secvec_stages::score`), built from the
//! sandbox's and the oracles' types; nothing else reads it but people.

pub const TAG: &str = "scores";
pub const FILE: &str = "judged.jsonl";
