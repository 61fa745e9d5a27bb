//! Slices every Python, C and C++ fix of SVEN-format JSONL files and reports Rescue's Table 6
//! figures (mean lines of code before and after slicing) and the time per 100 fixes:
//!
//!   cargo run --release -p secvec-slicing --example slice_corpus -- FILE.jsonl...
//!
//! Records without `line_changes` take their changed lines from a line diff. Identical
//! (before, after) pairs are sliced once.

use std::collections::HashSet;
use std::time::Instant;

use secvec_artifacts::language::Language;
use secvec_slicing::slice::changed_lines;
use secvec_slicing::{slice_fix, Fix};

fn lines(record: &serde_json::Value, side: &str) -> Option<Vec<usize>> {
    let changes = record.get("line_changes")?.get(side)?.as_array()?;
    Some(
        changes
            .iter()
            .filter_map(|c| c["line_no"].as_u64())
            .map(|l| l as usize)
            .collect(),
    )
}

fn main() {
    let mut seen = HashSet::new();
    let mut records = Vec::new();
    for path in std::env::args().skip(1) {
        for line in std::fs::read_to_string(&path).expect("readable JSONL").lines() {
            let r: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
            let Some(language) = r["file_name"].as_str().and_then(Language::from_file_name) else {
                continue;
            };
            if !matches!(language, Language::Python | Language::C | Language::Cpp) {
                continue;
            }
            let (before, after) = (
                r["func_src_before"].as_str().unwrap_or_default(),
                r["func_src_after"].as_str().unwrap_or_default(),
            );
            if seen.insert((before.to_string(), after.to_string())) {
                records.push((language, r));
            }
        }
    }
    let t = Instant::now();
    let mut sums = [0usize; 4];
    let mut parse_errors = 0;
    for (language, r) in &records {
        let (before, after) = (
            r["func_src_before"].as_str().unwrap(),
            r["func_src_after"].as_str().unwrap(),
        );
        let (deleted, added) = match (lines(r, "deleted"), lines(r, "added")) {
            (Some(d), Some(a)) => (d, a),
            _ => changed_lines(before, after),
        };
        let s = slice_fix(
            &Fix {
                language: *language,
                before,
                after,
                deleted,
                added,
            },
            2,
        );
        for (sum, x) in sums
            .iter_mut()
            .zip([s.loc_before, s.loc_vulnerable, s.loc_after, s.loc_secure])
        {
            *sum += x;
        }
        parse_errors += (s.parse_errors > 0) as usize;
    }
    let seconds = t.elapsed().as_secs_f64();
    let n = records.len().max(1) as f64;
    println!(
        "{} fixes ({} with parse errors): vulnerable {:.1} -> {:.1} lines, secure {:.1} -> {:.1}; {:.3} s in all, {:.4} s per 100 fixes",
        records.len(),
        parse_errors,
        sums[0] as f64 / n,
        sums[1] as f64 / n,
        sums[2] as f64 / n,
        sums[3] as f64 / n,
        seconds,
        seconds / n * 100.0
    );
}
