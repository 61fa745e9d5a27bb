//! Rescue's hierarchical retrieval (§2.2.2). Step 1 ranks the knowledge base's CWEs by the
//! task's vulnerability-cause analysis (dense, against each CWE's cause summary) and its draft's
//! API calls (BM25, against each CWE's API set), and keeps the best `top_cwes`. Step 2 ranks the
//! examples of those CWEs by the same two facets plus the draft's code (dense, against each
//! example's secure code) and keeps the best one. Both steps fuse with [`fusion::fuse`].
//!
//! At the example level the paper does not say what the cause facet compares; here an example
//! carries its CWE's cause score. Its API facet is BM25 against the example's own APIs.

use serde::{Deserialize, Serialize};

use crate::bm25::{self, Index};
use crate::dense::cosine;
use crate::fusion::{self, Facet, Thresholds};

/// A CWE of the knowledge base: the candidates of step 1.
pub struct CweEntry {
    /// The embedding of the CWE's vulnerability-cause summary, when it has one.
    pub cause: Option<Vec<f32>>,
    /// Every API name its examples call.
    pub apis: Vec<String>,
}

/// An example: the candidates of step 2.
pub struct ExampleEntry {
    /// Its CWE, an index into the CWEs.
    pub cwe: usize,
    /// The embedding of its secure code.
    pub code: Vec<f32>,
    pub apis: Vec<String>,
}

/// Which facets take part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FacetKind {
    /// BM25 of the draft's API calls.
    Api,
    /// Dense similarity of the task's vulnerability-cause analysis.
    Cause,
    /// Dense similarity of the draft code (step 2 only).
    Code,
}

pub struct Config {
    pub facets: Vec<FacetKind>,
    pub thresholds: Thresholds,
    /// RRF's smoothing constant.
    pub k: f64,
    /// CWEs kept by step 1; `None` skips step 1 and ranks every example (the paper's
    /// non-hierarchical comparison).
    pub top_cwes: Option<usize>,
}

/// What one task asks with; a facet the config leaves out may be `None`.
pub struct Query<'a> {
    pub cause: Option<&'a [f32]>,
    pub code: Option<&'a [f32]>,
    pub apis: &'a [String],
}

/// A retrieved candidate and its score per facet (`None`: the facet did not take part).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub index: usize,
    pub fused: f64,
    pub api: Option<f64>,
    pub cause: Option<f64>,
    pub code: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Step 1's CWEs, best first (empty when step 1 is skipped).
    pub cwes: Vec<Scored>,
    /// Step 2's best example, if any cleared a threshold.
    pub example: Option<Scored>,
    /// The highest score each facet gave any candidate (API and cause over the CWEs, code over
    /// every example), whether or not it cleared the threshold: what a threshold must be set
    /// against for another encoder or knowledge base.
    pub best: Best,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Best {
    pub api: Option<f64>,
    pub cause: Option<f64>,
    pub code: Option<f64>,
}

fn max(scores: impl IntoIterator<Item = f64>) -> Option<f64> {
    scores.into_iter().filter(|s| s.is_finite()).reduce(f64::max)
}

/// A knowledge base ready for queries: the BM25 indexes are built once.
pub struct Knowledge {
    cwes: Vec<CweEntry>,
    examples: Vec<ExampleEntry>,
    cwe_apis: Index,
    example_apis: Index,
}

fn tokens(apis: &[String]) -> Vec<String> {
    apis.iter().flat_map(|a| bm25::tokenize(a)).collect()
}

impl Knowledge {
    pub fn new(cwes: Vec<CweEntry>, examples: Vec<ExampleEntry>) -> Knowledge {
        let cwe_docs: Vec<Vec<String>> = cwes.iter().map(|c| tokens(&c.apis)).collect();
        let example_docs: Vec<Vec<String>> = examples.iter().map(|e| tokens(&e.apis)).collect();
        Knowledge {
            cwe_apis: Index::new(&cwe_docs, bm25::Params::default()),
            example_apis: Index::new(&example_docs, bm25::Params::default()),
            cwes,
            examples,
        }
    }

    pub fn examples(&self) -> &[ExampleEntry] {
        &self.examples
    }

    /// Runs both steps for one task.
    pub fn retrieve(&self, query: &Query, config: &Config) -> Outcome {
        let uses = |f| config.facets.contains(&f);
        let query_tokens = tokens(query.apis);
        let cwe_cause: Option<Vec<f64>> = match (uses(FacetKind::Cause), query.cause) {
            (true, Some(q)) => Some(
                self.cwes
                    .iter()
                    .map(|c| c.cause.as_deref().map_or(f64::NEG_INFINITY, |e| cosine(q, e)))
                    .collect(),
            ),
            _ => None,
        };
        let cwe_api = uses(FacetKind::Api).then(|| self.cwe_apis.scores(&query_tokens));

        // Step 1 over every CWE; with neither of its facets it keeps them all.
        let all_cwes: Vec<usize> = (0..self.cwes.len()).collect();
        let (cwes, kept): (Vec<Scored>, Vec<usize>) = match config.top_cwes {
            Some(top) if cwe_cause.is_some() || cwe_api.is_some() => {
                let scored = self.rank(
                    &all_cwes,
                    |d| cwe_api.as_ref().map(|s| s[d]),
                    |d| cwe_cause.as_ref().map(|s| s[d]),
                    |_| None,
                    config,
                    top,
                );
                let kept = scored.iter().map(|s| s.index).collect();
                (scored, kept)
            }
            _ => (Vec::new(), all_cwes),
        };

        // Step 2 over the kept CWEs' examples.
        let candidates: Vec<usize> = (0..self.examples.len())
            .filter(|&e| kept.contains(&self.examples[e].cwe))
            .collect();
        let example_api = uses(FacetKind::Api).then(|| self.example_apis.scores(&query_tokens));
        let example_code: Option<Vec<f64>> = match (uses(FacetKind::Code), query.code) {
            (true, Some(q)) => Some(self.examples.iter().map(|e| cosine(q, &e.code)).collect()),
            _ => None,
        };
        let best = Best {
            api: cwe_api.as_ref().and_then(|s| max(s.iter().copied())),
            cause: cwe_cause.as_ref().and_then(|s| max(s.iter().copied())),
            code: example_code.as_ref().and_then(|s| max(s.iter().copied())),
        };
        let example = self
            .rank(
                &candidates,
                |d| example_api.as_ref().map(|s| s[d]),
                |d| cwe_cause.as_ref().map(|s| s[self.examples[d].cwe]),
                |d| example_code.as_ref().map(|s| s[d]),
                config,
                1,
            )
            .into_iter()
            .next();
        Outcome { cwes, example, best }
    }

    /// The best `top` of `candidates` by the fused facets, with each facet's score.
    fn rank(
        &self,
        candidates: &[usize],
        api: impl Fn(usize) -> Option<f64>,
        cause: impl Fn(usize) -> Option<f64>,
        code: impl Fn(usize) -> Option<f64>,
        config: &Config,
        top: usize,
    ) -> Vec<Scored> {
        let column =
            |f: &dyn Fn(usize) -> Option<f64>| -> Option<Vec<f64>> { candidates.iter().map(|&d| f(d)).collect() };
        let t = &config.thresholds;
        let columns = [
            (column(&api), t.api),
            (column(&cause), t.cause),
            (column(&code), t.code),
        ];
        let facets: Vec<Facet> = columns
            .iter()
            .filter_map(|(scores, threshold)| {
                scores.as_ref().map(|scores| Facet {
                    scores,
                    threshold: *threshold,
                })
            })
            .collect();
        if facets.is_empty() || candidates.is_empty() {
            return Vec::new();
        }
        let fused = fusion::fuse(&facets, config.k);
        fusion::top(&fused, top)
            .into_iter()
            .map(|i| Scored {
                index: candidates[i],
                fused: fused[i],
                api: columns[0].0.as_ref().map(|s| s[i]),
                cause: columns[1].0.as_ref().map(|s| s[i]),
                code: columns[2].0.as_ref().map(|s| s[i]),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(x: f32, y: f32) -> Vec<f32> {
        let n = (x * x + y * y).sqrt();
        vec![x / n, y / n]
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// Three CWEs: 0 about yaml loading, 1 about subprocesses, 2 about SQL.
    fn knowledge() -> Knowledge {
        let cwes = vec![
            CweEntry {
                cause: Some(unit(1.0, 0.0)),
                apis: strings(&["yaml.load", "open"]),
            },
            CweEntry {
                cause: Some(unit(0.0, 1.0)),
                apis: strings(&["subprocess.call", "os.system"]),
            },
            CweEntry {
                cause: Some(unit(1.0, 1.0)),
                apis: strings(&["cursor.execute", "sqlite3.connect"]),
            },
        ];
        let examples = vec![
            ExampleEntry {
                cwe: 0,
                code: unit(1.0, 0.1),
                apis: strings(&["yaml.safe_load"]),
            },
            ExampleEntry {
                cwe: 1,
                code: unit(0.1, 1.0),
                apis: strings(&["subprocess.run"]),
            },
            ExampleEntry {
                cwe: 1,
                code: unit(0.0, 1.0),
                apis: strings(&["shlex.quote", "os.system"]),
            },
            ExampleEntry {
                cwe: 2,
                code: unit(1.0, 1.0),
                apis: strings(&["cursor.execute"]),
            },
        ];
        Knowledge::new(cwes, examples)
    }

    fn config(facets: &[FacetKind], top_cwes: Option<usize>) -> Config {
        Config {
            facets: facets.to_vec(),
            thresholds: Thresholds {
                api: 0.1,
                cause: 0.9,
                code: 0.9,
            },
            k: fusion::K,
            top_cwes,
        }
    }

    #[test]
    fn step_one_keeps_the_cwes_the_facets_agree_on_and_step_two_searches_only_them() {
        let kb = knowledge();
        let apis = strings(&["os.system"]);
        let cause = unit(0.05, 1.0);
        let code = unit(0.2, 1.0);
        let q = Query {
            cause: Some(&cause),
            code: Some(&code),
            apis: &apis,
        };
        let all = [FacetKind::Api, FacetKind::Cause, FacetKind::Code];
        let out = kb.retrieve(&q, &config(&all, Some(1)));
        assert_eq!(out.cwes.iter().map(|s| s.index).collect::<Vec<_>>(), vec![1]);
        let cwe = &out.cwes[0];
        assert!(cwe.api.unwrap() > 0.1 && cwe.cause.unwrap() > 0.9 && cwe.code.is_none());
        // Example 1 has the closer code, example 2 calls os.system: 2 wins on API + cause +
        // code (rank 2) over 1's cause + code (rank 1).
        let best = out.example.unwrap();
        assert_eq!(best.index, 2);
        assert_eq!(best.cause, cwe.cause, "an example carries its CWE's cause score");
    }

    #[test]
    fn without_step_one_every_example_competes() {
        let kb = knowledge();
        let apis = strings(&["cursor.execute"]);
        let code = unit(1.0, 1.0);
        let q = Query {
            cause: None,
            code: Some(&code),
            apis: &apis,
        };
        let out = kb.retrieve(&q, &config(&[FacetKind::Api, FacetKind::Code], None));
        assert!(out.cwes.is_empty());
        assert_eq!(out.example.unwrap().index, 3);
    }

    #[test]
    fn a_task_that_clears_no_threshold_retrieves_nothing() {
        let kb = knowledge();
        let apis = strings(&["print"]);
        let cause = unit(-1.0, -1.0);
        let q = Query {
            cause: Some(&cause),
            code: None,
            apis: &apis,
        };
        let out = kb.retrieve(&q, &config(&[FacetKind::Api, FacetKind::Cause], Some(4)));
        assert!(out.cwes.is_empty());
        assert!(out.example.is_none());
    }

    #[test]
    fn the_code_facet_alone_skips_step_one() {
        let kb = knowledge();
        let code = unit(1.0, 0.0);
        let q = Query {
            cause: None,
            code: Some(&code),
            apis: &[],
        };
        let out = kb.retrieve(&q, &config(&[FacetKind::Code], Some(1)));
        assert!(out.cwes.is_empty());
        assert_eq!(out.example.unwrap().index, 0);
    }
}
