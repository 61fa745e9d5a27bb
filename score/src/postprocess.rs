//! Completions to programs, as CodeGuard+ does it: the completion continues the scenario's
//! prefix and is cut where the function ends; identical programs are judged once.

/// The program a completion makes: the prefix, then the completion up to the end of the
/// function the prefix opened.
pub fn program(language: &str, prefix: &str, completion: &str) -> String {
    let end = function_end(language, prefix, completion).unwrap_or(completion.len());
    format!("{prefix}{}", &completion[..end])
}

/// Where the function the prefix opened ends in `completion` (a byte offset), once it has:
/// generation can stop there, as nothing after it is scored.
pub fn function_end(language: &str, prefix: &str, completion: &str) -> Option<usize> {
    match language {
        "py" => python_end(completion),
        _ => brace_end(prefix, completion),
    }
}

/// Python: the function ends at the first non-blank line that starts at column 0 (a new
/// top-level statement).
fn python_end(completion: &str) -> Option<usize> {
    let mut at = 0;
    for (i, line) in completion.split_inclusive('\n').enumerate() {
        let top_level = !line.trim().is_empty() && !line.starts_with([' ', '\t']);
        if i > 0 && top_level {
            return Some(at);
        }
        at += line.len();
    }
    None
}

/// C: the function ends at the brace that closes the one the prefix left open.
fn brace_end(prefix: &str, completion: &str) -> Option<usize> {
    let depth = |s: &str| {
        s.chars()
            .fold(0i64, |d, c| d + i64::from(c == '{') - i64::from(c == '}'))
    };
    let mut open = depth(prefix);
    if open <= 0 {
        return None;
    }
    for (i, c) in completion.char_indices() {
        match c {
            '{' => open += 1,
            '}' => {
                open -= 1;
                if open == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_functions_end_at_the_next_top_level_line() {
        let prefix = "def f(x):\n    y = 1\n";
        let completion = "    return x + y\n\n\nprint(f(2))\nmore()\n";
        assert_eq!(
            program("py", prefix, completion),
            "def f(x):\n    y = 1\n    return x + y\n\n\n"
        );
        assert_eq!(
            program("py", prefix, "    return 1"),
            "def f(x):\n    y = 1\n    return 1"
        );
        assert_eq!(function_end("py", prefix, "    return 1\n"), None, "not ended yet");
        assert_eq!(
            function_end("py", prefix, "    return 1\np"),
            Some(13),
            "a top-level line began"
        );
    }

    #[test]
    fn c_functions_end_at_the_closing_brace() {
        let prefix = "int main() {\n    char b[4];\n";
        let completion = "    if (1) { b[0] = 0; }\n    return 0;\n}\nint junk() {}\n";
        assert_eq!(
            program("c", prefix, completion),
            format!("{prefix}    if (1) {{ b[0] = 0; }}\n    return 0;\n}}")
        );
    }
}
