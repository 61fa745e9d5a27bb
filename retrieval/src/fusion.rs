//! Rescue's modified reciprocal rank fusion (§2.2.2, Eq. 1). Our copy of the paper lost the
//! formula; this is the reading its text supports ("s_f(d) and r_f(d) are the score and rank of
//! item d for facet f, τ_f is a confidence threshold, and k is a smoothing parameter"):
//!
//!   RRF(d) = Σ_f 1[s_f(d) ≥ τ_f] / (k + r_f(d))
//!
//! r_f(d) is d's 1-based rank among all candidates by facet f's score (higher first), taken
//! before thresholding; equal scores share the best rank (1 + the number of higher scores), so
//! candidates that carry one score, such as the examples of one CWE, are not told apart by
//! the order they were listed in. A candidate that clears no
//! facet's threshold scores 0 and is never retrieved, so a task with no security-relevant match
//! gets no security context, which is the thresholds' purpose in the paper.

use serde::{Deserialize, Serialize};

/// One facet's scores over the candidates and the score a candidate needs to count.
pub struct Facet<'a> {
    pub scores: &'a [f64],
    pub threshold: f64,
}

/// RRF's smoothing constant k (Cormack et al.; the paper's value).
pub const K: f64 = 60.0;

/// The fused score of every candidate.
pub fn fuse(facets: &[Facet], k: f64) -> Vec<f64> {
    let n = facets.first().map_or(0, |f| f.scores.len());
    let mut fused = vec![0.0; n];
    for facet in facets {
        assert_eq!(facet.scores.len(), n, "every facet scores every candidate");
        let order = ranking(facet.scores);
        let mut rank = 0;
        for (at, &d) in order.iter().enumerate() {
            if at == 0 || facet.scores[d] != facet.scores[order[at - 1]] {
                rank = at + 1;
            }
            if facet.scores[d] >= facet.threshold {
                fused[d] += 1.0 / (k + rank as f64);
            }
        }
    }
    fused
}

/// Candidates best first; equal scores keep their order. NaN ranks last.
pub fn ranking(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
        key(scores[b]).total_cmp(&key(scores[a]))
    });
    order
}

/// The best `k` candidates with a positive fused score, best first.
pub fn top(fused: &[f64], k: usize) -> Vec<usize> {
    ranking(fused).into_iter().filter(|&d| fused[d] > 0.0).take(k).collect()
}

/// The three facets' thresholds (the paper's values by default).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// BM25 score of the draft's API calls against a candidate's (raw, rank_bm25 Okapi).
    #[serde(default = "api")]
    pub api: f64,
    /// Cosine of the task's vulnerability-cause analysis and a candidate's cause summary.
    #[serde(default = "cause")]
    pub cause: f64,
    /// Cosine of the draft code and a candidate's sliced secure code.
    #[serde(default = "code")]
    pub code: f64,
}

fn api() -> f64 {
    4.0
}
fn cause() -> f64 {
    0.75
}
fn code() -> f64 {
    0.65
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            api: api(),
            cause: cause(),
            code: code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_counts_only_in_the_facets_whose_threshold_it_clears() {
        let api = [5.0, 1.0, 4.0];
        let cause = [0.2, 0.9, 0.8];
        let fused = fuse(
            &[
                Facet {
                    scores: &api,
                    threshold: 4.0,
                },
                Facet {
                    scores: &cause,
                    threshold: 0.75,
                },
            ],
            K,
        );
        // 0: API rank 1 only; 1: cause rank 1 only; 2: API rank 2 and cause rank 2.
        assert_eq!(fused, vec![1.0 / 61.0, 1.0 / 61.0, 2.0 / 62.0]);
        assert_eq!(top(&fused, 2), vec![2, 0]);
    }

    #[test]
    fn nothing_above_any_threshold_retrieves_nothing() {
        let scores = [0.1, 0.5];
        let fused = fuse(
            &[Facet {
                scores: &scores,
                threshold: 0.65,
            }],
            K,
        );
        assert!(top(&fused, 4).is_empty());
    }

    #[test]
    fn equal_scores_share_a_rank() {
        let scores = [0.8, 0.9, 0.8, 0.7];
        let fused = fuse(
            &[Facet {
                scores: &scores,
                threshold: 0.0,
            }],
            K,
        );
        assert_eq!(fused, vec![1.0 / 62.0, 1.0 / 61.0, 1.0 / 62.0, 1.0 / 64.0]);
    }

    #[test]
    fn ties_keep_the_candidates_order_and_nan_ranks_last() {
        assert_eq!(ranking(&[1.0, f64::NAN, 3.0, 1.0]), vec![2, 0, 3, 1]);
    }
}
