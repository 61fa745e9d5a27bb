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
        let mut scan = Scan::new(in_comment);
        let mut start = i;
        let end = loop {
            let mut end = start;
            while end + 1 < lines.len() && continues(lines[end]) {
                end += 1;
            }
            let piece: String = lines[start..=end]
                .iter()
                .map(|l| {
                    let l = l.trim_end_matches([' ', '\t']);
                    l.strip_suffix('\\').unwrap_or(l).to_string() + if continues(l) { "" } else { "\n" }
                })
                .collect();
            scan.feed(&piece);
            if scan.is_directive && scan.in_comment && end + 1 < lines.len() {
                start = end + 1;
                continue;
            }
            break end;
        };
        let ends_in_comment = scan.in_comment;
        let directive = scan.directive();
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

/// What a directive's text has shown so far, read a piece at a time (each piece once, so a
/// comment carrying a directive over many lines costs one pass): whether it is a directive,
/// its words (comments read as spaces), and whether it is inside a block comment.
struct Scan {
    in_comment: bool,
    in_line_comment: bool,
    quote: Option<char>,
    first_token: Option<char>,
    is_directive: bool,
    words: Vec<String>,
    word: String,
}

impl Scan {
    fn new(in_comment: bool) -> Scan {
        Scan {
            in_comment,
            in_line_comment: false,
            quote: None,
            first_token: None,
            is_directive: false,
            words: Vec::new(),
            word: String::new(),
        }
    }

    fn feed(&mut self, text: &str) {
        let chars: Vec<char> = text.chars().collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            let next = chars.get(k + 1).copied();
            k += 1;
            if self.in_line_comment {
                self.in_line_comment = c != '\n';
                continue;
            }
            if self.in_comment {
                if c == '*' && next == Some('/') {
                    self.in_comment = false;
                    k += 1;
                }
                continue;
            }
            if let Some(q) = self.quote {
                if c == '\\' {
                    k += 1;
                } else if c == q {
                    self.quote = None;
                }
                continue;
            }
            match (c, next) {
                ('/', Some('*')) => {
                    self.in_comment = true;
                    k += 1;
                    self.flush();
                    continue;
                }
                ('/', Some('/')) => {
                    self.in_line_comment = true;
                    self.flush();
                    continue;
                }
                _ => {}
            }
            if self.first_token.is_none() && !c.is_whitespace() {
                self.first_token = Some(c);
                match (c, next) {
                    ('#', _) => {
                        self.is_directive = true;
                        continue;
                    }
                    ('%', Some(':')) => {
                        self.is_directive = true;
                        k += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            if c == '"' || c == '\'' {
                self.flush();
                self.quote = Some(c);
            } else if c.is_alphanumeric() || c == '_' {
                self.word.push(c);
            } else {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
    }

    /// The directive ("name argument"), if the text is one.
    fn directive(mut self) -> Option<String> {
        self.flush();
        self.is_directive
            .then(|| self.words.iter().take(2).cloned().collect::<Vec<_>>().join(" "))
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
