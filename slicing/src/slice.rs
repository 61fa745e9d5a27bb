//! Slicing a fix: both versions' PDGs, sliced from the changed lines, made parallel.

use std::collections::{BTreeSet, HashMap, VecDeque};

use secvec_artifacts::language::Language;
use serde::{Deserialize, Serialize};
use similar::{DiffOp, TextDiff};

use crate::pdg::Pdg;

/// A vulnerability fix: the function before and after, and its changed lines (1-based, as
/// SVEN's and SafeCoder's `line_changes` number them).
pub struct Fix<'a> {
    pub language: Language,
    pub before: &'a str,
    pub after: &'a str,
    pub deleted: Vec<usize>,
    pub added: Vec<usize>,
}

/// The two slices of a fix, with their sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlicedFix {
    pub vulnerable: String,
    pub secure: String,
    /// The lines each slice keeps (1-based).
    pub vulnerable_lines: Vec<usize>,
    pub secure_lines: Vec<usize>,
    /// Non-blank lines of the whole functions and of the slices.
    pub loc_before: usize,
    pub loc_after: usize,
    pub loc_vulnerable: usize,
    pub loc_secure: usize,
    /// ERROR and MISSING nodes tree-sitter left in the two versions: slicing used what parsed.
    pub parse_errors: usize,
}

/// Lines deleted from `before` and added in `after` (1-based), from a line diff, for records
/// without `line_changes`.
pub fn changed_lines(before: &str, after: &str) -> (Vec<usize>, Vec<usize>) {
    let (mut deleted, mut added) = (Vec::new(), Vec::new());
    for op in TextDiff::from_lines(before, after).ops() {
        match *op {
            DiffOp::Delete { old_index, old_len, .. } => deleted.extend(old_index + 1..=old_index + old_len),
            DiffOp::Insert { new_index, new_len, .. } => added.extend(new_index + 1..=new_index + new_len),
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => {
                deleted.extend(old_index + 1..=old_index + old_len);
                added.extend(new_index + 1..=new_index + new_len);
            }
            DiffOp::Equal { .. } => {}
        }
    }
    (deleted, added)
}

/// The lines (0-based) a slice of `code` keeps: the points of interest, every statement within
/// `hops` dependence edges of them backward and forward, the headers of the compound statements
/// around those statements, and the function's own header.
fn slice_lines(pdg: &Pdg, poi: &BTreeSet<usize>, hops: usize) -> BTreeSet<usize> {
    let n = pdg.statements.len();
    let (mut succ, mut pred) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    for &(a, b) in pdg.data.iter().chain(&pdg.control) {
        succ[a].push(b);
        pred[b].push(a);
    }
    let mut start: BTreeSet<usize> = BTreeSet::new();
    for &line in poi {
        let own: Vec<usize> = (0..n).filter(|&s| pdg.statements[s].lines.contains(&line)).collect();
        if own.is_empty() {
            // A line of no statement's own (a lone brace, `else {`): the innermost around it.
            if let Some(s) = (0..n)
                .filter(|&s| {
                    let (a, b) = pdg.statements[s].span;
                    a <= line && line <= b
                })
                .max_by_key(|&s| pdg.statements[s].span.0)
            {
                start.insert(s);
            }
        }
        start.extend(own);
    }
    let mut kept: BTreeSet<usize> = start.clone();
    for edges in [&succ, &pred] {
        let mut queue: VecDeque<(usize, usize)> = start.iter().map(|&s| (s, 0)).collect();
        let mut seen: BTreeSet<usize> = start.clone();
        while let Some((s, d)) = queue.pop_front() {
            if d == hops {
                continue;
            }
            for &t in &edges[s] {
                if seen.insert(t) {
                    kept.insert(t);
                    queue.push_back((t, d + 1));
                }
            }
        }
    }
    let mut lines: BTreeSet<usize> = poi.clone();
    for &s in &kept {
        let mut at = Some(s);
        while let Some(x) = at {
            lines.extend(&pdg.statements[x].lines);
            at = pdg.statements[x].parent;
        }
    }
    if let Some(first) = pdg.statements.first().filter(|s| s.kind == "function_definition") {
        lines.extend(&first.lines);
    }
    lines
}

fn loc(lines: &[&str], keep: impl Iterator<Item = usize>) -> usize {
    keep.filter(|&i| lines.get(i).is_some_and(|l| !l.trim().is_empty()))
        .count()
}

/// Slices both versions of a fix with the given hop limit (Rescue: 2) and completes each with
/// the other's context lines, so they differ only where the fix does.
pub fn slice_fix(fix: &Fix, hops: usize) -> SlicedFix {
    let (before_pdg, after_pdg) = (
        Pdg::build(fix.language, fix.before),
        Pdg::build(fix.language, fix.after),
    );
    let to_rows = |v: &[usize]| -> BTreeSet<usize> { v.iter().filter(|&&l| l > 0).map(|l| l - 1).collect() };
    let (deleted, added) = (to_rows(&fix.deleted), to_rows(&fix.added));
    let mut vulnerable = if deleted.is_empty() {
        BTreeSet::new()
    } else {
        slice_lines(&before_pdg, &deleted, hops)
    };
    let mut secure = if added.is_empty() {
        BTreeSet::new()
    } else {
        slice_lines(&after_pdg, &added, hops)
    };
    // Unchanged lines pair up between the versions; each slice takes the other's context.
    let (mut old_to_new, mut new_to_old) = (HashMap::new(), HashMap::new());
    for op in TextDiff::from_lines(fix.before, fix.after).ops() {
        if let DiffOp::Equal {
            old_index,
            new_index,
            len,
        } = *op
        {
            for k in 0..len {
                old_to_new.insert(old_index + k, new_index + k);
                new_to_old.insert(new_index + k, old_index + k);
            }
        }
    }
    let from_vulnerable: Vec<usize> = vulnerable.iter().filter_map(|l| old_to_new.get(l).copied()).collect();
    let from_secure: Vec<usize> = secure.iter().filter_map(|l| new_to_old.get(l).copied()).collect();
    secure.extend(from_vulnerable);
    vulnerable.extend(from_secure);
    let (before_lines, after_lines): (Vec<&str>, Vec<&str>) =
        (fix.before.lines().collect(), fix.after.lines().collect());
    let text = |lines: &[&str], keep: &BTreeSet<usize>| {
        keep.iter()
            .filter_map(|&i| lines.get(i).copied())
            .collect::<Vec<_>>()
            .join("\n")
    };
    SlicedFix {
        vulnerable: text(&before_lines, &vulnerable),
        secure: text(&after_lines, &secure),
        vulnerable_lines: vulnerable.iter().map(|l| l + 1).collect(),
        secure_lines: secure.iter().map(|l| l + 1).collect(),
        loc_before: loc(&before_lines, 0..before_lines.len()),
        loc_after: loc(&after_lines, 0..after_lines.len()),
        loc_vulnerable: loc(&before_lines, vulnerable.iter().copied()),
        loc_secure: loc(&after_lines, secure.iter().copied()),
        parse_errors: before_pdg.parse_errors + after_pdg.parse_errors,
    }
}
