//! What a program can write to mute the oracles that read it, taken out of their copy of it.
//!
//! Both languages: a lone carriage return ends a line for Python and gcc but not for semgrep or
//! this module, so the copies get `\n` line ends. Python: a source-encoding declaration other
//! than UTF-8 (`# coding: utf-7`) makes Python read code the tools see as a comment, so such a
//! program is not judged by them at all ([`python_copy`]).
//!
//! C:
//! gcc obeys `#pragma GCC diagnostic` (also as `_Pragma`, which a macro can build) and
//! `#pragma GCC system_header`, and `#line` or a line marker (`# 1 "stdio.h" 3`) moves findings
//! into a system header or onto the scenario's own lines, which are not counted. Directives
//! cannot come from macros, so blanking these lines of the copy removes them (keeping every other
//! line where it was); `_Pragma` is defined away on gcc's command line ([`NO_PRAGMA_OPERATOR`]),
//! and a directive that would redefine or undefine it is blanked too. cppcheck reads inline
//! suppressions only with `--inline-suppr`, which is never given; bandit and semgrep are told
//! to ignore theirs (`--ignore-nosec`, `--disable-nosem`).

/// gcc's definition that turns every `_Pragma("...")` operator into nothing.
pub const NO_PRAGMA_OPERATOR: &str = "-D_Pragma(x)=";

/// `text` with the line ends Python and gcc read: `\r\n` and a lone `\r` become `\n`.
fn unix_lines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// The Python oracles' copy of a program, or why they cannot judge it.
pub fn python_copy(text: &str) -> Result<String, String> {
    let text = unix_lines(text);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    // PEP 263: the first line, or the second after a blank or comment-only first line.
    let blank_or_comment = |l: &str| {
        let l = l.trim_start_matches([' ', '\t', '\x0c']);
        l.is_empty() || l.starts_with('#')
    };
    let candidates = if blank_or_comment(first) {
        vec![first, lines.next().unwrap_or_default()]
    } else {
        vec![first]
    };
    for line in candidates {
        if let Some(encoding) = declared_encoding(line) {
            let normal = encoding.to_lowercase().replace('_', "-");
            if !(normal == "utf-8" || normal == "utf8" || normal.starts_with("utf-8-") || normal == "ascii") {
                return Err(format!(
                    "it declares the source encoding `{encoding}`, in which Python reads code the oracles see as text"
                ));
            }
        }
    }
    Ok(text)
}

/// The encoding a `# ... coding[:=] NAME` comment line declares.
fn declared_encoding(line: &str) -> Option<&str> {
    let comment = line.trim_start_matches([' ', '\t', '\x0c']).strip_prefix('#')?;
    let at = comment.find("coding")?;
    let rest = comment[at + "coding".len()..].strip_prefix([':', '='])?;
    let name = rest.trim_start_matches([' ', '\t']);
    let end = name
        .find(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .unwrap_or(name.len());
    (end > 0).then(|| &name[..end])
}

/// Whether a physical line continues on the next: a backslash at its end (gcc allows blanks
/// after it, with a warning).
fn continues(line: &str) -> bool {
    line.trim_end_matches([' ', '\t']).ends_with('\\')
}

/// `text` with every directive that could mute a check blanked, line numbers unchanged.
pub fn without_mutes(text: &str) -> String {
    let text = unix_lines(text);
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut in_comment = false;
    let mut i = 0;
    while i < lines.len() {
        // A logical line: physical lines joined by a backslash at their end, and, in a
        // directive, by a comment that goes on over the line end (comments are spaces by then).
        let mut end = i;
        let (directive, ends_in_comment) = loop {
            while end + 1 < lines.len() && continues(lines[end]) {
                end += 1;
            }
            let logical: String = lines[i..=end]
                .iter()
                .map(|l| {
                    let l = l.trim_end_matches([' ', '\t']);
                    l.strip_suffix('\\').unwrap_or(l).to_string() + if continues(l) { "" } else { "\n" }
                })
                .collect();
            let (directive, ends_in_comment) = scan(&logical, in_comment);
            if directive.is_some() && ends_in_comment && end + 1 < lines.len() {
                end += 1;
                continue;
            }
            break (directive, ends_in_comment);
        };
        in_comment = ends_in_comment;
        if directive.as_deref().is_some_and(mutes) {
            // A directive ends outside a comment (one it opens carries it on), but at the end
            // of the text.
            for _ in i..end {
                out.push(String::new());
            }
            out.push(if ends_in_comment { "/*".into() } else { String::new() });
        } else {
            out.extend(lines[i..=end].iter().map(|l| l.to_string()));
        }
        i = end + 1;
    }
    out.join("\n")
}

/// Whether a directive (its name and the word after it) can mute a check.
fn mutes(directive: &str) -> bool {
    let mut words = directive.split(' ');
    let name = words.next().unwrap_or_default();
    let first_argument = words.next().unwrap_or_default();
    name == "line"
        || name == "pragma"
        || name.starts_with(|c: char| c.is_ascii_digit())
        || (matches!(name, "define" | "undef") && first_argument == "_Pragma")
}

/// The directive a logical line holds ("name argument", comments read as spaces), and whether
/// the line ends inside a block comment.
fn scan(line: &str, mut in_comment: bool) -> (Option<String>, bool) {
    let chars: Vec<char> = line.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut first_token: Option<char> = None;
    let mut is_directive = false;
    let mut quote: Option<char> = None;
    let mut k = 0;
    while k < chars.len() {
        let c = chars[k];
        let next = chars.get(k + 1).copied();
        if in_comment {
            if c == '*' && next == Some('/') {
                in_comment = false;
                k += 1;
            }
            k += 1;
            continue;
        }
        if let Some(q) = quote {
            if c == '\\' {
                k += 1;
            } else if c == q {
                quote = None;
            }
            k += 1;
            continue;
        }
        match (c, next) {
            ('/', Some('*')) => {
                in_comment = true;
                k += 2;
                flush(&mut word, &mut words);
                continue;
            }
            ('/', Some('/')) => break,
            _ => {}
        }
        if first_token.is_none() && !c.is_whitespace() {
            first_token = Some(c);
            let opener = match (c, next) {
                ('#', _) => 1,
                ('%', Some(':')) => 2,
                _ => 0,
            };
            if opener > 0 {
                is_directive = true;
                k += opener;
                continue;
            }
        }
        if c == '"' || c == '\'' {
            flush(&mut word, &mut words);
            quote = Some(c);
        } else if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut words);
        }
        k += 1;
    }
    flush(&mut word, &mut words);
    let directive = is_directive.then(|| words.iter().take(2).cloned().collect::<Vec<_>>().join(" "));
    (directive, in_comment)
}

fn flush(word: &mut String, words: &mut Vec<String>) {
    if !word.is_empty() {
        words.push(std::mem::take(word));
    }
}

#[cfg(test)]
mod tests {
    use super::without_mutes;

    #[test]
    fn directives_that_mute_are_blanked_and_every_line_stays_where_it_was() {
        let program = "#include <stdio.h>\n\
                       #pragma GCC diagnostic ignored \"-Wanalyzer-double-free\"\n\
                       \x20 /* x */ # line 1\n\
                       %:line 2\n\
                       # 1 \"/usr/include/stdio.h\" 3\n\
                       #pra\\\n\
                       gma GCC system_header\n\
                       #undef _Pragma\n\
                       #define _Pragma(x) x\n\
                       #define LINE \"#line 1\"\n\
                       int f(void) { return 0; } // #line 3\n\
                       #line 9 /* a comment\n\
                       that goes on */ int g;\n\
                       #define P(x) _Pragma(#x)\n";
        let muted = without_mutes(program);
        let lines: Vec<&str> = muted.split('\n').collect();
        assert_eq!(lines.len(), program.split('\n').count());
        assert_eq!(
            lines,
            [
                "#include <stdio.h>",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "#define LINE \"#line 1\"",
                "int f(void) { return 0; } // #line 3",
                // The comment carries the directive on: gcc reads `int g;` as part of it.
                "",
                "",
                "#define P(x) _Pragma(#x)",
                ""
            ]
        );
    }

    /// What gcc still reads as a directive: a line ended by a lone carriage return, a backslash
    /// with blanks after it, a comment that carries the directive over a line end.
    #[test]
    fn directives_are_found_where_gcc_finds_them() {
        let program = "int x;\r#pragma GCC diagnostic ignored \"-Wanalyzer-double-free\"\r\n\
                       #pra\\  \n\
                       gma GCC system_header\n\
                       # /* a comment\n\
                       */ pragma GCC diagnostic ignored \"-Wanalyzer-double-free\"\n\
                       int y;\n";
        assert_eq!(without_mutes(program), "int x;\n\n\n\n\n\nint y;\n");
    }

    #[test]
    fn python_is_read_with_its_line_ends_and_only_in_utf_8() {
        use super::python_copy;
        assert_eq!(
            python_copy("def f(name):\r    return open(name)\r\n").unwrap(),
            "def f(name):\n    return open(name)\n"
        );
        let utf7 = "# coding: utf-7\ndef f(name):\n    pass #+AAo-    return open(name)\n";
        assert!(python_copy(utf7).unwrap_err().contains("utf-7"));
        assert!(python_copy("#!/usr/bin/env python\n# -*- coding: utf_7 -*-\nx = 1\n").is_err());
        assert!(python_copy("# -*- coding: utf-8 -*-\nx = 1\n").is_ok());
        // Only the first two lines declare an encoding, the second only after a comment.
        assert!(python_copy("x = 1\n# coding: utf-7\n").is_ok());
    }

    #[test]
    fn a_directive_inside_a_comment_or_a_string_is_left_alone() {
        let program = "/* start\n#line 1\n*/\nconst char *s = \"\\\n#line 2\";\n";
        assert_eq!(without_mutes(program), program);
    }
}
