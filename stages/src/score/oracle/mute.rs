//! What a C program can write to mute the oracles that read it, taken out of their copy of it.
//!
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

/// `text` with every directive that could mute a check blanked, line numbers unchanged.
pub fn without_mutes(text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut in_comment = false;
    let mut i = 0;
    while i < lines.len() {
        // A logical line: physical lines joined by a backslash at their end.
        let mut end = i;
        while end + 1 < lines.len() && lines[end].trim_end_matches('\r').ends_with('\\') {
            end += 1;
        }
        let logical: String = lines[i..=end]
            .iter()
            .map(|l| l.trim_end_matches('\r').trim_end_matches('\\'))
            .collect();
        let started_in_comment = in_comment;
        let (directive, ends_in_comment) = scan(&logical, started_in_comment);
        in_comment = ends_in_comment;
        if directive.as_deref().is_some_and(mutes) {
            for _ in i..end {
                out.push(String::new());
            }
            // A comment the directive opened goes on over the next lines.
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
                "/*",
                "that goes on */ int g;",
                "#define P(x) _Pragma(#x)",
                ""
            ]
        );
    }

    #[test]
    fn a_directive_inside_a_comment_or_a_string_is_left_alone() {
        let program = "/* start\n#line 1\n*/\nconst char *s = \"\\\n#line 2\";\n";
        assert_eq!(without_mutes(program), program);
    }
}
