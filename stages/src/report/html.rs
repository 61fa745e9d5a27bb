//! The report as one self-contained HTML page: tables, figures (inline SVG), why programs
//! failed per scenario (from `score`'s `judged.jsonl`), and where every number came from.
//! Everything from data is escaped: scenario names, test output and programs are untrusted.

use std::collections::BTreeMap;
use std::fmt::Write;

use secvec_artifacts::scores::JudgedProgram;

use super::table::Rendered;

/// One upstream artifact, as the provenance section lists it.
pub struct Source {
    pub stage: String,
    pub labels: BTreeMap<String, String>,
    pub digest: String,
}

/// The verdicts of one `score` input.
pub struct Verdicts {
    pub stage: String,
    pub judged: Vec<JudgedProgram>,
}

pub struct Page<'a> {
    pub title: &'a str,
    /// Which security oracles judged the scores, when any did.
    pub oracles: Option<&'a str>,
    pub tables: Vec<(&'a str, &'a Rendered)>,
    /// Title and SVG of each figure.
    pub figures: Vec<(&'a str, &'a str)>,
    pub verdicts: &'a [Verdicts],
    pub sources: &'a [Source],
}

/// How much of a program or test output a page shows.
const SHOWN_BYTES: usize = 4000;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn clipped(s: &str) -> String {
    if s.len() <= SHOWN_BYTES {
        return escape(s);
    }
    let mut end = SHOWN_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… ({} more bytes)", escape(&s[..end]), s.len() - end)
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0 2rem; } figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
details { margin: 0.3rem 0; } summary { cursor: pointer; }
pre { background: #f7f7f7; padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; max-height: 20rem; }
.bad { color: #b00020; } .good { color: #1b7f2a; } .muted { color: #777; }
nav a { margin-right: 1rem; }
";

pub fn page(p: &Page) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n<nav>",
        escape(p.title),
        escape(p.title)
    );
    for (id, name, shown) in [
        ("tables", "Tables", !p.tables.is_empty()),
        ("figures", "Figures", !p.figures.is_empty()),
        ("failures", "Failures per scenario", !p.verdicts.is_empty()),
        ("provenance", "Provenance", true),
    ] {
        if shown {
            let _ = write!(h, "<a href=\"#{id}\">{name}</a>");
        }
    }
    h.push_str("</nav>\n");
    if let Some(note) = p.oracles {
        let _ = writeln!(h, "<p>{}</p>", escape(note));
    }
    if !p.tables.is_empty() {
        h.push_str("<section id=\"tables\">\n");
        for (title, t) in &p.tables {
            let _ = write!(h, "<h2>{}</h2>\n{}", escape(title), table(t));
        }
        h.push_str("</section>\n");
    }
    if !p.figures.is_empty() {
        h.push_str("<section id=\"figures\">\n");
        for (title, svg) in &p.figures {
            // Plotters escapes the text it writes into the SVG.
            let _ = write!(h, "<h2>{}</h2>\n<figure>{svg}</figure>\n", escape(title));
        }
        h.push_str("</section>\n");
    }
    if !p.verdicts.is_empty() {
        h.push_str("<section id=\"failures\">\n<h2>Failures per scenario</h2>\n");
        for v in p.verdicts {
            failures(&mut h, v);
        }
        h.push_str("</section>\n");
    }
    h.push_str("<section id=\"provenance\">\n<h2>Provenance</h2>\n<table><tr><th>input stage</th><th>labels</th><th>output digest</th></tr>\n");
    for s in p.sources {
        let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&s.stage),
            escape(&labels.join(", ")),
            escape(&s.digest)
        );
    }
    let _ = write!(
        h,
        "</table>\n<p class=\"muted\">Written by secvec {}.</p>\n</section>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    h
}

fn table(t: &Rendered) -> String {
    let mut h = String::from("<table>\n<tr>");
    for c in &t.header {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("</tr>\n");
    for (cells, values) in t.cells.iter().zip(&t.values) {
        h.push_str("<tr>");
        for (c, v) in cells.iter().zip(values) {
            let class = if v.is_number() { " class=\"num\"" } else { "" };
            let _ = write!(h, "<td{class}>{}</td>", escape(c));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

/// Per scenario: how many programs passed, and for each program that did not, why.
fn failures(h: &mut String, v: &Verdicts) {
    let mut by_scenario: BTreeMap<&str, Vec<&JudgedProgram>> = BTreeMap::new();
    for j in &v.judged {
        by_scenario.entry(&j.scenario).or_default().push(j);
    }
    let _ = write!(
        h,
        "<h3>{}</h3>\n<table><tr><th>scenario</th><th>samples</th><th>functional</th><th>secure</th><th>why not</th></tr>\n",
        escape(&v.stage)
    );
    for (scenario, programs) in &by_scenario {
        let samples: usize = programs.iter().map(|j| j.count).sum();
        let functional: usize = programs.iter().filter(|j| j.functional).map(|j| j.count).sum();
        let secure: usize = programs
            .iter()
            .filter(|j| j.secure == Some(true))
            .map(|j| j.count)
            .sum();
        let mut why: BTreeMap<String, usize> = BTreeMap::new();
        for j in programs {
            for r in reasons(j) {
                *why.entry(r).or_default() += j.count;
            }
        }
        let why: Vec<String> = why.iter().map(|(r, n)| format!("{} ×{n}", escape(r))).collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{samples}</td><td class=\"num\">{functional}</td><td class=\"num\">{secure}</td><td>{}</td></tr>",
            escape(scenario),
            why.join("<br>")
        );
    }
    h.push_str("</table>\n");
    for (scenario, programs) in &by_scenario {
        let _ = writeln!(
            h,
            "<details><summary>{} — {} distinct programs</summary>",
            escape(scenario),
            programs.len()
        );
        for j in programs {
            let verdict = match (j.functional, j.secure) {
                (true, Some(true)) => "<span class=\"good\">functional, secure</span>".to_string(),
                (f, s) => format!(
                    "<span class=\"bad\">{}</span>",
                    [
                        (!f).then_some("not functional"),
                        (s == Some(false)).then_some("vulnerable")
                    ]
                    .into_iter()
                    .flatten()
                    .chain(f.then_some("functional"))
                    .collect::<Vec<_>>()
                    .join(", ")
                ),
            };
            let _ = write!(
                h,
                "<details><summary>{} sample(s): {verdict}</summary>\n<p>{}</p>",
                j.count,
                escape(&reasons(j).join("; "))
            );
            if let Some(s) = &j.security {
                for f in &s.findings {
                    let _ = write!(
                        h,
                        "<p>{}:{} line {}: {}</p>",
                        escape(&f.oracle),
                        escape(&f.rule),
                        f.line,
                        escape(&f.message)
                    );
                }
            }
            if !j.stderr_tail.is_empty() && !j.functional {
                let _ = write!(h, "<pre>{}</pre>", clipped(&j.stderr_tail));
            }
            if !j.program.is_empty() {
                let _ = write!(h, "<pre>{}</pre>", clipped(&j.program));
            }
            h.push_str("</details>\n");
        }
        h.push_str("</details>\n");
    }
}

/// Why a program is not counted as functional and secure, in short phrases.
fn reasons(j: &JudgedProgram) -> Vec<String> {
    let mut out = Vec::new();
    if !j.valid {
        out.push("does not parse".to_string());
    } else if !j.functional {
        let reason = serde_json::to_value(j.reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let detail = j.detail.lines().next().unwrap_or_default();
        out.push(if detail.is_empty() {
            reason
        } else {
            format!("{reason}: {}", detail.chars().take(120).collect::<String>())
        });
    }
    if let Some(s) = &j.security {
        if !s.secure {
            out.push(format!("flagged by {}", s.decided_by.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secvec_artifacts::scores::{ExitReason, Finding, SecurityVerdict};

    #[test]
    fn what_a_program_wrote_is_shown_as_text_never_as_markup() {
        let hostile = "</pre><script>alert(1)</script><img src=x onerror=alert(2)>";
        let judged = JudgedProgram {
            scenario: "<b>cwe-079</b>".into(),
            count: 2,
            valid: true,
            functional: false,
            reason: ExitReason::Crash,
            detail: hostile.into(),
            failed_tests: vec![hostile.into()],
            stderr_tail: hostile.into(),
            secure: Some(false),
            security: Some(SecurityVerdict {
                secure: false,
                decided_by: vec![hostile.into()],
                findings: vec![Finding {
                    oracle: "semgrep".into(),
                    rule: hostile.into(),
                    line: 3,
                    message: hostile.into(),
                }],
            }),
            program: hostile.into(),
        };
        let verdicts = [Verdicts {
            stage: hostile.into(),
            judged: vec![judged],
        }];
        let html = page(&Page {
            title: hostile,
            oracles: Some(hostile),
            tables: Vec::new(),
            figures: Vec::new(),
            verdicts: &verdicts,
            sources: &[],
        });
        assert!(
            !html.contains("<script") && !html.contains("<img") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            html.contains("crash: &lt;/pre&gt;"),
            "the reason and the first line of the detail"
        );
    }
}
