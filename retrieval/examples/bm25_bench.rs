//! BM25 index and query time on a corpus file, for retrieval/bench/bm25_vs_peers.sh. Reads
//! `{"documents": [text], "queries": [text]}`; prints seconds to tokenise and index, and to
//! score every document for every query.

use std::time::Instant;

use secvec_retrieval::bm25::{tokenize, Index, Params};

fn main() {
    let path = std::env::args().nth(1).expect("usage: bm25_bench CORPUS.json");
    let job: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let texts = |k: &str| -> Vec<String> { serde_json::from_value(job[k].clone()).unwrap() };
    let (documents, queries) = (texts("documents"), texts("queries"));
    let t = Instant::now();
    let tokens: Vec<Vec<String>> = documents.iter().map(|d| tokenize(d)).collect();
    let index = Index::new(&tokens, Params::default());
    let index_s = t.elapsed().as_secs_f64();
    let queries: Vec<Vec<String>> = queries.iter().map(|q| tokenize(q)).collect();
    let t = Instant::now();
    let mut checksum = 0.0;
    for q in &queries {
        checksum += index.scores(q).iter().sum::<f64>();
    }
    let query_s = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"documents": documents.len(), "queries": queries.len(), "index_s": index_s, "query_s": query_s, "checksum": checksum})
    );
}
