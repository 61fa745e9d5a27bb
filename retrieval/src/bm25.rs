//! BM25 as `rank_bm25`'s `BM25Okapi` computes it (k1 = 1.5, b = 0.75, ε = 0.25), with one
//! pinned tokenizer. Rescue's API threshold (4.0) is a raw score, so both are fixed: a change to
//! either changes what the threshold means.

use std::collections::HashMap;

/// The tokens BM25 sees: ASCII-lowercased runs of `[a-z0-9_]`, so `yaml.safe_load(x)` is
/// `yaml`, `safe_load`, `x`. Anything else separates tokens.
pub fn tokenize(text: &str) -> Vec<String> {
    text.as_bytes()
        .split(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .filter(|t| !t.is_empty())
        .map(|t| String::from_utf8_lossy(t).to_ascii_lowercase())
        .collect()
}

/// BM25's free parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub k1: f64,
    pub b: f64,
    /// A term in more than half the documents has a negative idf; it gets `epsilon` times the
    /// mean idf instead.
    pub epsilon: f64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            k1: 1.5,
            b: 0.75,
            epsilon: 0.25,
        }
    }
}

/// An inverted index over tokenised documents.
pub struct Index {
    params: Params,
    terms: HashMap<String, usize>,
    /// Per term, its idf and the documents holding it with the term's count there.
    idf: Vec<f64>,
    postings: Vec<Vec<(u32, u32)>>,
    /// Per document, k1 · (1 − b + b · |d| / avgdl): the length part of the denominator.
    norms: Vec<f64>,
}

impl Index {
    pub fn new<D: AsRef<[String]>>(documents: &[D], params: Params) -> Index {
        let mut terms: HashMap<String, usize> = HashMap::new();
        let mut postings: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut total = 0usize;
        for (d, doc) in documents.iter().enumerate() {
            let doc = doc.as_ref();
            total += doc.len();
            let mut counts: HashMap<&str, u32> = HashMap::new();
            for t in doc {
                *counts.entry(t).or_default() += 1;
            }
            let mut counts: Vec<(&str, u32)> = counts.into_iter().collect();
            counts.sort_unstable();
            for (t, n) in counts {
                let id = *terms.entry(t.to_string()).or_insert_with(|| {
                    postings.push(Vec::new());
                    postings.len() - 1
                });
                postings[id].push((d as u32, n));
            }
        }
        let n = documents.len() as f64;
        let avgdl = if documents.is_empty() { 0.0 } else { total as f64 / n };
        let mut idf: Vec<f64> = postings
            .iter()
            .map(|p| {
                let df = p.len() as f64;
                (n - df + 0.5).ln() - (df + 0.5).ln()
            })
            .collect();
        let mean = idf.iter().sum::<f64>() / idf.len().max(1) as f64;
        for x in idf.iter_mut().filter(|x| **x < 0.0) {
            *x = params.epsilon * mean;
        }
        // With no tokens at all, no document can score; any finite norm will do.
        let norms = documents
            .iter()
            .map(|d| {
                let relative = if avgdl > 0.0 {
                    d.as_ref().len() as f64 / avgdl
                } else {
                    0.0
                };
                params.k1 * (1.0 - params.b + params.b * relative)
            })
            .collect();
        Index {
            params,
            terms,
            idf,
            postings,
            norms,
        }
    }

    pub fn len(&self) -> usize {
        self.norms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.norms.is_empty()
    }

    /// Every document's score for the query; a token repeated in the query counts each time.
    pub fn scores(&self, query: &[String]) -> Vec<f64> {
        let mut scores = vec![0.0; self.len()];
        let k1 = self.params.k1;
        for t in query {
            let Some(&id) = self.terms.get(t) else {
                continue;
            };
            let idf = self.idf[id];
            for &(d, tf) in &self.postings[id] {
                let tf = tf as f64;
                scores[d as usize] += idf * (tf * (k1 + 1.0) / (tf + self.norms[d as usize]));
            }
        }
        scores
    }
}
