//! One line of SVEN-format JSONL, checked and turned into a training triple.

use secvec_artifacts::language::Language;
use secvec_artifacts::pairs::Pair;

use super::PairParams;
use crate::fixes::{CharChange, Record};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not a pair record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot tell the language of file_name `{0}`")]
    Language(String),
    #[error("char_changes.{side}[{index}] spans characters {start}..{end}, outside the {len}-character function")]
    OutOfRange {
        side: &'static str,
        index: usize,
        start: usize,
        end: usize,
        len: usize,
    },
    #[error("char_changes.{side}[{index}] says {want:?} but the function has {got:?} there")]
    Mismatch {
        side: &'static str,
        index: usize,
        want: String,
        got: String,
    },
}

pub fn parse_line(line: &str, id: &str, split: &str, params: &PairParams) -> Result<Pair, RecordError> {
    let raw: Record = serde_json::from_str(line)?;
    let language =
        Language::from_file_name(&raw.file_name).ok_or_else(|| RecordError::Language(raw.file_name.clone()))?;
    let (secure_spans, vulnerable_spans) = match &raw.char_changes {
        Some(cc) => (
            byte_spans(&raw.func_src_after, &cc.added, "added")?,
            byte_spans(&raw.func_src_before, &cc.deleted, "deleted")?,
        ),
        None => diff_spans(&raw.func_src_before, &raw.func_src_after),
    };
    let func_name = raw.func_name.clone().unwrap_or_default();
    let cwe = raw.vul_type.to_lowercase();
    let instruction = match raw.description.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => d.to_string(),
        None => params
            .instruction
            .replace("{language}", language.display())
            .replace("{func_name}", &func_name)
            .replace("{cwe}", &cwe),
    };
    Ok(Pair {
        id: id.to_string(),
        split: split.to_string(),
        cwe,
        language,
        func_name,
        prompt: params.template.replace("{instruction}", &instruction),
        instruction,
        secure: raw.func_src_after,
        vulnerable: raw.func_src_before,
        secure_spans,
        vulnerable_spans,
    })
}

/// Byte offset of every character boundary, so character indices (as SVEN records them) map to bytes.
fn boundaries(s: &str) -> Vec<usize> {
    s.char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(s.len()))
        .collect()
}

fn byte_spans(text: &str, changes: &[CharChange], side: &'static str) -> Result<Vec<[usize; 2]>, RecordError> {
    let b = boundaries(text);
    let len = b.len() - 1;
    let mut spans = Vec::new();
    for (index, c) in changes.iter().enumerate() {
        if c.char_start > c.char_end || c.char_end > len {
            return Err(RecordError::OutOfRange {
                side,
                index,
                start: c.char_start,
                end: c.char_end,
                len,
            });
        }
        let span = [b[c.char_start], b[c.char_end]];
        let got = &text[span[0]..span[1]];
        if got != c.chars {
            return Err(RecordError::Mismatch {
                side,
                index,
                want: c.chars.clone(),
                got: got.to_string(),
            });
        }
        spans.push(span);
    }
    Ok(merge(spans))
}

/// Character-level diff for pairs that do not record their changes.
fn diff_spans(vulnerable: &str, secure: &str) -> (Vec<[usize; 2]>, Vec<[usize; 2]>) {
    let (bv, bs) = (boundaries(vulnerable), boundaries(secure));
    let diff = similar::TextDiff::configure()
        .algorithm(similar::Algorithm::Myers)
        .diff_chars(vulnerable, secure);
    let (mut sec, mut vul) = (Vec::new(), Vec::new());
    for op in diff.ops() {
        let (old, new) = (op.old_range(), op.new_range());
        match op.tag() {
            similar::DiffTag::Equal => {}
            _ => {
                if !old.is_empty() {
                    vul.push([bv[old.start], bv[old.end]]);
                }
                if !new.is_empty() {
                    sec.push([bs[new.start], bs[new.end]]);
                }
            }
        }
    }
    (merge(sec), merge(vul))
}

fn merge(mut spans: Vec<[usize; 2]>) -> Vec<[usize; 2]> {
    spans.sort();
    let mut out: Vec<[usize; 2]> = Vec::new();
    for s in spans {
        match out.last_mut() {
            Some(last) if s[0] <= last[1] => last[1] = last[1].max(s[1]),
            _ => out.push(s),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PairParams {
        serde_json::from_str("{}").unwrap()
    }

    #[test]
    fn recorded_char_changes_become_byte_spans() {
        // "é" is two bytes: character offsets must be converted.
        let line = serde_json::json!({
            "func_src_before": "def f(é):\n    q % é\n",
            "func_src_after": "def f(é):\n    q, (é)\n",
            "vul_type": "cwe-089", "file_name": "a.py", "func_name": "f",
            "char_changes": {"deleted": [{"char_start": 15, "char_end": 17, "chars": " %"}],
                             "added": [{"char_start": 15, "char_end": 16, "chars": ","}, {"char_start": 17, "char_end": 18, "chars": "("}]}
        });
        let p = parse_line(&line.to_string(), "x:1", "train", &params()).unwrap();
        assert_eq!(&p.vulnerable[p.vulnerable_spans[0][0]..p.vulnerable_spans[0][1]], " %");
        assert_eq!(p.secure_spans, vec![[16, 17], [18, 19]]);
        assert_eq!(p.language, Language::Python);
        assert!(p
            .prompt
            .contains("### Instruction:\nCreate a Python function `f`.\n\n### Response:\n"));
    }

    #[test]
    fn mismatched_changes_are_rejected() {
        let line = serde_json::json!({
            "func_src_before": "abc", "func_src_after": "abd", "vul_type": "cwe-1", "file_name": "a.c",
            "char_changes": {"deleted": [{"char_start": 2, "char_end": 3, "chars": "x"}], "added": []}
        });
        let err = parse_line(&line.to_string(), "x:1", "train", &params()).unwrap_err();
        assert!(matches!(err, RecordError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn computed_spans_cover_exactly_the_changed_text() {
        let vul = "strcpy(buf, src);\nreturn 0;";
        let sec = "strncpy(buf, src, n);\nreturn 0;";
        let (s, v) = diff_spans(vul, sec);
        let keep = |t: &str, spans: &[[usize; 2]]| {
            let mut out = String::new();
            let mut at = 0;
            for sp in spans {
                out.push_str(&t[at..sp[0]]);
                at = sp[1];
            }
            out + &t[at..]
        };
        assert_eq!(
            keep(vul, &v),
            keep(sec, &s),
            "what is outside the spans is common to both"
        );
        assert!(
            s.iter().all(|sp| sp[1] <= sec.find(';').unwrap()),
            "the shared tail is outside every span: {s:?}"
        );
    }

    #[test]
    fn description_wins_over_the_instruction_fallback() {
        let line = serde_json::json!({
            "func_src_before": "a", "func_src_after": "b", "vul_type": "CWE-022", "file_name": "x.cc",
            "description": "Read a file safely."
        });
        let p = parse_line(&line.to_string(), "x:1", "val", &params()).unwrap();
        assert_eq!(p.instruction, "Read a file safely.");
        assert_eq!((p.cwe.as_str(), p.language), ("cwe-022", Language::Cpp));
    }
}
