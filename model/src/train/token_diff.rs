//! Which tokens of a secure/vulnerable pair changed: the masks m⁺ / m⁻ of LPO and the changed-
//! token weights of SafeCoder. Both reference implementations diff the two token-id sequences
//! with Python's `difflib.ndiff(linejunk=None, charjunk=None)` on the ids written as decimal
//! strings, mark every token `ndiff` reports as removed (`- `) or added (`+ `), and then also mark
//! a single unmarked token between two marked ones. This is a port of that behaviour (Python
//! 3.11's `SequenceMatcher`, autojunk included, and `Differ`'s fancy replace, which compares the
//! ids' digits to pair similar tokens), checked against Python itself in the tests.

use std::collections::HashMap;

/// `SequenceMatcher` without a junk function (what `ndiff(linejunk=None, charjunk=None)` uses).
struct Matcher<'a, T> {
    a: &'a [T],
    b: &'a [T],
    /// Positions of each element of `b`, less the popular ones (autojunk).
    b2j: HashMap<&'a T, Vec<usize>>,
}

impl<'a, T: Eq + std::hash::Hash> Matcher<'a, T> {
    fn new(a: &'a [T], b: &'a [T]) -> Self {
        let mut b2j: HashMap<&T, Vec<usize>> = HashMap::new();
        for (j, x) in b.iter().enumerate() {
            b2j.entry(x).or_default().push(j);
        }
        // autojunk: in a sequence of 200 or more, elements on more than 1% of it + 1 positions
        // never start a match (they may still extend one).
        if b.len() >= 200 {
            let most = b.len() / 100 + 1;
            b2j.retain(|_, js| js.len() <= most);
        }
        Matcher { a, b, b2j }
    }

    fn longest_match(&self, alo: usize, ahi: usize, blo: usize, bhi: usize) -> (usize, usize, usize) {
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0);
        let mut j2len: HashMap<usize, usize> = HashMap::new();
        for i in alo..ahi {
            let mut next: HashMap<usize, usize> = HashMap::new();
            if let Some(js) = self.b2j.get(&self.a[i]) {
                for &j in js {
                    if j < blo {
                        continue;
                    }
                    if j >= bhi {
                        break;
                    }
                    let k = j.checked_sub(1).and_then(|p| j2len.get(&p)).copied().unwrap_or(0) + 1;
                    next.insert(j, k);
                    if k > bestsize {
                        (besti, bestj, bestsize) = (i + 1 - k, j + 1 - k, k);
                    }
                }
            }
            j2len = next;
        }
        while besti > alo && bestj > blo && self.a[besti - 1] == self.b[bestj - 1] {
            (besti, bestj, bestsize) = (besti - 1, bestj - 1, bestsize + 1);
        }
        while besti + bestsize < ahi && bestj + bestsize < bhi && self.a[besti + bestsize] == self.b[bestj + bestsize] {
            bestsize += 1;
        }
        (besti, bestj, bestsize)
    }

    fn matching_blocks(&self) -> Vec<(usize, usize, usize)> {
        let (la, lb) = (self.a.len(), self.b.len());
        let mut queue = vec![(0, la, 0, lb)];
        let mut blocks = Vec::new();
        while let Some((alo, ahi, blo, bhi)) = queue.pop() {
            let (i, j, k) = self.longest_match(alo, ahi, blo, bhi);
            if k > 0 {
                blocks.push((i, j, k));
                if alo < i && blo < j {
                    queue.push((alo, i, blo, j));
                }
                if i + k < ahi && j + k < bhi {
                    queue.push((i + k, ahi, j + k, bhi));
                }
            }
        }
        blocks.sort();
        let mut merged: Vec<(usize, usize, usize)> = Vec::new();
        for (i, j, k) in blocks {
            match merged.last_mut() {
                Some(last) if last.0 + last.2 == i && last.1 + last.2 == j => last.2 += k,
                _ => merged.push((i, j, k)),
            }
        }
        merged.push((la, lb, 0));
        merged
    }

    fn opcodes(&self) -> Vec<(Op, usize, usize, usize, usize)> {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        for (ai, bj, size) in self.matching_blocks() {
            let op = match (i < ai, j < bj) {
                (true, true) => Some(Op::Replace),
                (true, false) => Some(Op::Delete),
                (false, true) => Some(Op::Insert),
                (false, false) => None,
            };
            if let Some(op) = op {
                out.push((op, i, ai, j, bj));
            }
            (i, j) = (ai + size, bj + size);
            if size > 0 {
                out.push((Op::Equal, ai, i, bj, j));
            }
        }
        out
    }

    fn ratio(&self) -> f64 {
        let matches: usize = self.matching_blocks().iter().map(|b| b.2).sum();
        ratio(matches, self.a.len() + self.b.len())
    }

    fn quick_ratio(&self) -> f64 {
        let mut avail: HashMap<&T, i64> = HashMap::new();
        for x in self.b {
            *avail.entry(x).or_default() += 1;
        }
        let mut matches = 0;
        for x in self.a {
            let n = avail.entry(x).or_default();
            if *n > 0 {
                matches += 1;
            }
            *n -= 1;
        }
        ratio(matches, self.a.len() + self.b.len())
    }

    fn real_quick_ratio(&self) -> f64 {
        ratio(self.a.len().min(self.b.len()), self.a.len() + self.b.len())
    }
}

fn ratio(matches: usize, length: usize) -> f64 {
    if length == 0 {
        1.0
    } else {
        2.0 * matches as f64 / length as f64
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Replace,
    Delete,
    Insert,
    Equal,
}

/// Whether `ndiff` reports each token of `a` as removed and each of `b` as added.
struct Marks {
    a: Vec<bool>,
    b: Vec<bool>,
}

impl Marks {
    fn compare(&mut self, a: &[String], b: &[String]) {
        let m = Matcher::new(a, b);
        for (op, alo, ahi, blo, bhi) in m.opcodes() {
            match op {
                Op::Replace => self.fancy_replace(a, alo, ahi, b, blo, bhi),
                Op::Delete => self.a[alo..ahi].fill(true),
                Op::Insert => self.b[blo..bhi].fill(true),
                Op::Equal => {}
            }
        }
    }

    /// `Differ._fancy_replace`: pair the most similar tokens (by their digits, ratio ≥ 0.75) or,
    /// failing that, the first identical pair, and recurse on either side of it.
    fn fancy_replace(&mut self, a: &[String], alo: usize, ahi: usize, b: &[String], blo: usize, bhi: usize) {
        let (mut best_ratio, cutoff) = (0.74, 0.75);
        let (mut best_i, mut best_j) = (0, 0);
        let mut eq: Option<(usize, usize)> = None;
        // The ids' digits, once per token rather than once per pair of tokens.
        let a_chars: Vec<Vec<char>> = a[alo..ahi].iter().map(|t| t.chars().collect()).collect();
        for (j, bj_text) in b.iter().enumerate().take(bhi).skip(blo) {
            let bj: Vec<char> = bj_text.chars().collect();
            for (k, ai) in a_chars.iter().enumerate() {
                let i = alo + k;
                if a[i] == *bj_text {
                    eq.get_or_insert((i, j));
                    continue;
                }
                let c = Matcher::new(ai, &bj);
                if c.real_quick_ratio() > best_ratio && c.quick_ratio() > best_ratio && c.ratio() > best_ratio {
                    (best_ratio, best_i, best_j) = (c.ratio(), i, j);
                }
            }
        }
        let identical = if best_ratio < cutoff {
            let Some((i, j)) = eq else {
                self.a[alo..ahi].fill(true);
                self.b[blo..bhi].fill(true);
                return;
            };
            (best_i, best_j) = (i, j);
            true
        } else {
            false
        };
        self.fancy_helper(a, alo, best_i, b, blo, best_j);
        if !identical {
            self.a[best_i] = true;
            self.b[best_j] = true;
        }
        self.fancy_helper(a, best_i + 1, ahi, b, best_j + 1, bhi);
    }

    fn fancy_helper(&mut self, a: &[String], alo: usize, ahi: usize, b: &[String], blo: usize, bhi: usize) {
        match (alo < ahi, blo < bhi) {
            (true, true) => self.fancy_replace(a, alo, ahi, b, blo, bhi),
            (true, false) => self.a[alo..ahi].fill(true),
            (false, true) => self.b[blo..bhi].fill(true),
            (false, false) => {}
        }
    }
}

/// Marks a single unmarked token between two marked ones, as both reference implementations do.
fn fill_single_gaps(marks: &mut [bool]) {
    for i in 2..marks.len() {
        if marks[i] && marks[i - 2] && !marks[i - 1] {
            marks[i - 1] = true;
        }
    }
}

/// The changed tokens of `before` (e.g. the vulnerable completion) and of `after` (the secure
/// one), as LPO's and SafeCoder's masks.
pub fn changed_tokens(before: &[i64], after: &[i64]) -> (Vec<bool>, Vec<bool>) {
    let a: Vec<String> = before.iter().map(i64::to_string).collect();
    let b: Vec<String> = after.iter().map(i64::to_string).collect();
    let mut marks = Marks {
        a: vec![false; a.len()],
        b: vec![false; b.len()],
    };
    marks.compare(&a, &b);
    fill_single_gaps(&mut marks.a);
    fill_single_gaps(&mut marks.b);
    (marks.a, marks.b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs with every kind of edit: substitutions by similar ids (shared digits), insertions,
    /// deletions, repeated and popular tokens, and lengths past autojunk's 200.
    fn pairs() -> Vec<(Vec<i64>, Vec<i64>)> {
        let mut state = 99u64;
        let mut next = move |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        let mut out = vec![(vec![], vec![1]), (vec![5], vec![]), (vec![1, 2, 3], vec![1, 2, 3])];
        // (length, vocabulary): small vocabularies repeat tokens; past 200 tokens autojunk
        // makes the frequent ones popular.
        let shapes = [
            (3, 8),
            (12, 8),
            (40, 8),
            (40, 60),
            (12, 1000),
            (210, 60),
            (210, 1000),
            (260, 1000),
        ];
        for case in 0..96 {
            let (len, vocab) = shapes[case % shapes.len()];
            let a: Vec<i64> = (0..len).map(|_| next(vocab) as i64).collect();
            let mut b = Vec::new();
            for &x in &a {
                match next(20) {
                    0 => {}
                    1 => b.extend([x, next(vocab) as i64]),
                    2 => b.push(x + 1),
                    3 => b.push(x * 10 + 3),
                    _ => b.push(x),
                }
            }
            out.push((a, b));
        }
        out
    }

    #[test]
    fn masks_equal_python_difflib_with_the_reference_gap_filling() {
        let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        if !python.exists() {
            eprintln!("notice: no .venv (run scripts/setup.sh); skipping the comparison with difflib");
            return;
        }
        // The reference behaviour, written out: ndiff on the ids as strings; a removed or added
        // token is marked, and so is the one token between it and the previous marked token on
        // its side.
        let script = r#"
import difflib, json, sys
out = []
for a, b in json.load(sys.stdin):
    marks = {"-": [0] * len(a), "+": [0] * len(b)}
    pos = {"-": 0, "+": 0}
    last = {"-": -100, "+": -100}
    for line in difflib.ndiff([str(x) for x in a], [str(x) for x in b], linejunk=None, charjunk=None):
        tag = line[0]
        if tag == " ":
            pos["-"] += 1
            pos["+"] += 1
        elif tag in "-+":
            i = pos[tag]
            marks[tag][i] = 1
            if i - last[tag] == 2:
                marks[tag][i - 1] = 1
            last[tag] = i
            pos[tag] += 1
    out.append([marks["-"], marks["+"]])
json.dump(out, sys.stdout)
"#;
        let cases = pairs();
        let mut child = std::process::Command::new(&python)
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::to_string(&cases).unwrap().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let want: Vec<(Vec<u8>, Vec<u8>)> = serde_json::from_slice(&out.stdout).unwrap();
        let mut changed = 0;
        for ((a, b), (wa, wb)) in cases.iter().zip(&want) {
            let (ma, mb) = changed_tokens(a, b);
            let as_u8 = |m: &[bool]| m.iter().map(|&x| u8::from(x)).collect::<Vec<_>>();
            assert_eq!((&as_u8(&ma), &as_u8(&mb)), (wa, wb), "a = {a:?}\nb = {b:?}");
            changed += ma.iter().chain(&mb).filter(|x| **x).count();
        }
        assert!(changed > 1000, "the cases must exercise the diff ({changed} marks)");
    }
}
