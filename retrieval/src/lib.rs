//! Retrieval for Rescue (§2.2): a sparse facet (BM25 over API names), dense facets (cosine of
//! normalised embeddings) and the fusion that ranks candidates by both.

pub mod bm25;
pub mod dense;
pub mod fusion;
pub mod hierarchy;
