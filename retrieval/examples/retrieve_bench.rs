//! Rescue's retrieval latency per query, model calls excluded: both steps over a real knowledge
//! base's API sets (a `kb-slice` output) with 384-dimensional embeddings (MiniLM's size) drawn at
//! random, since what an encoder writes does not change the work.
//!   cargo run --release --example retrieve_bench -p secvec-retrieval -- examples.jsonl [queries]
//! Prints one JSON line: knowledge-base size, index build time, and per-query latency.

use std::time::Instant;

use secvec_retrieval::fusion::{Thresholds, K};
use secvec_retrieval::hierarchy::{Config, CweEntry, ExampleEntry, FacetKind, Knowledge, Query};

const DIM: usize = 384;

/// A small deterministic generator (xorshift), so runs compare.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIM)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: retrieve_bench EXAMPLES.jsonl [QUERIES]");
    let queries: usize = args.next().map_or(1000, |q| q.parse().expect("a number of queries"));
    let text = std::fs::read_to_string(&path).expect("readable examples");
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    // One knowledge base per language family, as `retrieve` builds them; the largest is timed.
    let family = |r: &serde_json::Value| if r["language"] == "python" { "python" } else { "c" };
    let big = ["python", "c"]
        .into_iter()
        .max_by_key(|f| rows.iter().filter(|r| family(r) == *f).count())
        .unwrap();
    let members: Vec<&serde_json::Value> = rows.iter().filter(|r| family(r) == big).collect();
    let mut cwe_names: Vec<String> = members.iter().map(|r| r["cwe"].as_str().unwrap().to_string()).collect();
    cwe_names.sort();
    cwe_names.dedup();
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let started = Instant::now();
    let mut cwes: Vec<CweEntry> = cwe_names
        .iter()
        .map(|_| CweEntry {
            cause: Some(rng.unit()),
            apis: Vec::new(),
        })
        .collect();
    let examples: Vec<ExampleEntry> = members
        .iter()
        .map(|r| {
            let cwe = cwe_names.iter().position(|c| c == r["cwe"].as_str().unwrap()).unwrap();
            let apis = strings(&r["apis_sliced"]);
            cwes[cwe].apis.extend(apis.iter().cloned());
            ExampleEntry {
                cwe,
                code: rng.unit(),
                apis,
            }
        })
        .collect();
    let knowledge = Knowledge::new(cwes, examples);
    let build_s = started.elapsed().as_secs_f64();
    let config = Config {
        facets: vec![FacetKind::Api, FacetKind::Cause, FacetKind::Code],
        thresholds: Thresholds::default(),
        k: K,
        top_cwes: Some(4),
    };
    // Each query: one example's APIs (a draft that calls what a fix calls), random embeddings.
    let asked: Vec<(Vec<String>, Vec<f32>, Vec<f32>)> = (0..queries)
        .map(|i| {
            (
                strings(&members[i % members.len()]["apis_original"]),
                rng.unit(),
                rng.unit(),
            )
        })
        .collect();
    let mut times = Vec::with_capacity(queries);
    let mut found = 0usize;
    for (apis, cause, code) in &asked {
        let t = Instant::now();
        let outcome = knowledge.retrieve(
            &Query {
                cause: Some(cause),
                code: Some(code),
                apis,
            },
            &config,
        );
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        found += usize::from(outcome.example.is_some());
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{}",
        serde_json::json!({
            "family": big, "cwes": cwe_names.len(), "examples": members.len(), "queries": queries,
            "build_ms": build_s * 1000.0, "mean_ms": mean, "p50_ms": at(0.5), "p99_ms": at(0.99),
            "max_ms": times[times.len() - 1], "with_example": found,
        })
    );
}
