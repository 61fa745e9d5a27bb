//! The project's own checks for C, on tree-sitter's syntax tree: one per weakness pattern of the
//! benchmark's C scenarios. They are deliberately local (one function at a time, guards found
//! by looking at earlier conditions) — a check for the scenario's pattern, not a general
//! analyzer; gcc `-fanalyzer` and cppcheck run beside them. They read untrusted code, so the
//! scorer asks them through `secvec-parse` in the sandbox ([`crate::parse::service`]).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use tree_sitter::{Node, Parser};

/// A pattern a check found: which check, on which line (1-based), and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatternFinding {
    pub rule: String,
    pub line: usize,
    pub message: String,
}

/// Calls whose result comes from outside the program.
const INPUT: [&str; 10] = [
    "atoi", "atol", "atoll", "strtol", "strtoll", "strtoul", "strtoull", "rand", "random", "getchar",
];

/// The check names the mapping file may use.
pub const PATTERNS: [&str; 6] = [
    "unchecked-index",
    "unguarded-addition",
    "missing-null-test",
    "use-after-free",
    "unbounded-copy",
    "world-writable-file",
];

/// Every pattern finding in a C program.
pub fn check(source: &str) -> Vec<PatternFinding> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_c::LANGUAGE.into())
        .expect("the C grammar matches the tree-sitter version");
    let Some(tree) = parser.parse(source, None) else {
        return Vec::new();
    };
    let src = source.as_bytes();
    let all = preorder(tree.root_node());
    let in_function = |n: &Node| {
        let mut p = n.parent();
        while let Some(x) = p {
            if x.kind() == "function_definition" {
                return true;
            }
            p = x.parent();
        }
        false
    };
    let globals: Vec<Node> = all.iter().filter(|n| !in_function(n)).copied().collect();
    let globals = Sizes::of(&globals, src, Sizes::default());
    let mut found = Vec::new();
    for f in all.iter().filter(|n| n.kind() == "function_definition") {
        // Each function's own buffers, over the file's globals (names repeat across functions).
        let sizes = Sizes::of(&preorder(*f), src, globals.clone());
        let body = Function::new(*f, src);
        body.unchecked_index(&sizes, &mut found);
        body.unguarded_addition(&mut found);
        body.missing_null_test(&mut found);
        body.use_after_free(&mut found);
        body.unbounded_copy(&sizes, &mut found);
        body.world_writable(&mut found);
    }
    found.sort_by_key(|f| f.line);
    found
}

fn preorder(root: Node<'_>) -> Vec<Node<'_>> {
    let mut out = Vec::new();
    let mut cursor = root.walk();
    loop {
        out.push(cursor.node());
        if cursor.goto_first_child() {
            continue;
        }
        while !cursor.goto_next_sibling() {
            if !cursor.goto_parent() {
                return out;
            }
        }
    }
}

fn text<'s>(n: Node<'_>, src: &'s [u8]) -> &'s str {
    n.utf8_text(src).unwrap_or("")
}

fn line(n: Node<'_>) -> usize {
    n.start_position().row + 1
}

/// `name` appears in `text` as a whole identifier.
fn mentions(text: &str, name: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(is_ident)
            && !text[i + name.len()..].chars().next().is_some_and(is_ident)
    })
}

/// Skips casts and parentheses: `(person *)malloc(...)` is the call.
fn unwrap(mut n: Node<'_>) -> Node<'_> {
    loop {
        n = match n.kind() {
            "cast_expression" => n.child_by_field_name("value").unwrap_or(n),
            "parenthesized_expression" => n.named_child(0).unwrap_or(n),
            _ => return n,
        };
        if !matches!(n.kind(), "cast_expression" | "parenthesized_expression") {
            return n;
        }
    }
}

fn call_name<'s>(n: Node<'_>, src: &'s [u8]) -> Option<&'s str> {
    let n = unwrap(n);
    (n.kind() == "call_expression").then(|| text(n.child_by_field_name("function").expect("calls have one"), src))
}

fn args<'t>(call: Node<'t>) -> Vec<Node<'t>> {
    let Some(list) = call.child_by_field_name("arguments") else {
        return Vec::new();
    };
    let mut c = list.walk();
    list.named_children(&mut c).collect()
}

/// The identifier a declarator declares (`*p`, `buf[10]`, `p = ...`).
fn declared_name<'s>(mut d: Node<'_>, src: &'s [u8]) -> Option<&'s str> {
    loop {
        if d.kind() == "identifier" {
            return Some(text(d, src));
        }
        d = d.child_by_field_name("declarator")?;
    }
}

/// The length of a C string literal's contents (escapes count as one character).
fn literal_len(lit: &str) -> Option<i64> {
    let body = lit.strip_prefix('"')?.strip_suffix('"')?;
    let mut n = 0;
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            chars.next();
        }
        n += 1;
    }
    Some(n)
}

fn parse_int(t: &str) -> Option<i64> {
    let t = t.trim_end_matches(['u', 'U', 'l', 'L']);
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if t.len() > 1 && t.starts_with('0') {
        i64::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse().ok()
    }
}

fn type_size(t: &str) -> i64 {
    let t = t.trim();
    if t.ends_with('*') {
        return 8;
    }
    let t = t
        .trim_start_matches("const ")
        .trim_start_matches("unsigned ")
        .trim_start_matches("signed ");
    // int8_t, uint16_t, int32_t, uint64_t ...
    if let Some(bits) = t
        .strip_suffix("_t")
        .map(|b| b.trim_start_matches('u').trim_start_matches("int"))
        .and_then(|b| b.parse::<i64>().ok())
    {
        return bits / 8;
    }
    match t {
        "char" | "bool" | "_Bool" => 1,
        "short" => 2,
        "int" | "float" => 4,
        _ => 8,
    }
}

/// What is known of the sizes of named buffers: bytes that may be written, bytes that may be
/// read (a pointer to a string literal), and element counts of arrays.
#[derive(Clone, Default)]
struct Sizes {
    bytes: HashMap<String, i64>,
    readable: HashMap<String, i64>,
    elements: HashMap<String, i64>,
}

impl Sizes {
    fn of(all: &[Node<'_>], src: &[u8], base: Sizes) -> Sizes {
        let mut s = base;
        for n in all {
            match n.kind() {
                "array_declarator" => {
                    let (Some(name), Some(size)) = (
                        declared_name(*n, src),
                        n.child_by_field_name("size").and_then(|z| s.eval(z, src)),
                    ) else {
                        continue;
                    };
                    let elem = n
                        .parent()
                        .and_then(|p| {
                            if p.kind() == "init_declarator" {
                                p.parent()
                            } else {
                                Some(p)
                            }
                        })
                        .and_then(|d| d.child_by_field_name("type"))
                        .map(|t| type_size(text(t, src)))
                        .unwrap_or(1);
                    s.elements.insert(name.into(), size);
                    s.bytes.insert(name.into(), size * elem);
                }
                "init_declarator" | "assignment_expression" => {
                    let (target, value) = if n.kind() == "init_declarator" {
                        (n.child_by_field_name("declarator"), n.child_by_field_name("value"))
                    } else {
                        (n.child_by_field_name("left"), n.child_by_field_name("right"))
                    };
                    let (Some(target), Some(value)) = (target, value) else {
                        continue;
                    };
                    let Some(name) = declared_name(target, src) else {
                        continue;
                    };
                    let value = unwrap(value);
                    if value.kind() == "string_literal" {
                        if let Some(len) = literal_len(text(value, src)) {
                            s.readable.insert(name.into(), len + 1);
                        }
                    } else if value.kind() == "identifier" {
                        // `b = t`: b now has t's size, or an unknown one.
                        let from = text(value, src);
                        for map in [&mut s.bytes, &mut s.elements, &mut s.readable] {
                            match map.get(from).copied() {
                                Some(v) => map.insert(name.into(), v),
                                None => map.remove(name),
                            };
                        }
                    } else if matches!(call_name(value, src), Some("malloc" | "realloc")) {
                        let size_arg = usize::from(call_name(value, src) == Some("realloc"));
                        let Some(size) = args(value).get(size_arg).map(|a| unwrap(*a)) else {
                            continue;
                        };
                        s.elements.remove(name);
                        if let Some(bytes) = s.eval(size, src) {
                            s.bytes.insert(name.into(), bytes);
                        }
                        // malloc(sizeof(T) * n): n elements.
                        if let (Some(l), Some(r)) =
                            (size.child_by_field_name("left"), size.child_by_field_name("right"))
                        {
                            let count = match (l.kind(), r.kind()) {
                                ("sizeof_expression", _) => s.eval(r, src),
                                (_, "sizeof_expression") => s.eval(l, src),
                                _ => None,
                            };
                            let times = size
                                .child_by_field_name("operator")
                                .is_some_and(|o| text(o, src) == "*");
                            if let Some(n) = count.filter(|_| times) {
                                s.elements.insert(name.into(), n);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        s
    }

    /// The value of a constant expression, where it has one.
    fn eval(&self, n: Node<'_>, src: &[u8]) -> Option<i64> {
        let t = text(n, src);
        match n.kind() {
            "number_literal" => parse_int(t),
            "parenthesized_expression" => self.eval(n.named_child(0)?, src),
            "binary_expression" => {
                let l = self.eval(n.child_by_field_name("left")?, src)?;
                let r = self.eval(n.child_by_field_name("right")?, src)?;
                match text(n.child_by_field_name("operator")?, src) {
                    "+" => l.checked_add(r),
                    "-" => l.checked_sub(r),
                    "*" => l.checked_mul(r),
                    "/" => l.checked_div(r),
                    "|" => Some(l | r),
                    "&" => Some(l & r),
                    "<<" => l.checked_shl(u32::try_from(r).ok()?),
                    _ => None,
                }
            }
            "sizeof_expression" => {
                if let Some(ty) = n.child_by_field_name("type") {
                    return Some(type_size(text(ty, src)));
                }
                let v = unwrap(n.child_by_field_name("value")?);
                let name = text(v, src);
                self.bytes.get(name).copied().or_else(|| match v.kind() {
                    "string_literal" => literal_len(name).map(|l| l + 1),
                    "identifier" => Some(8),
                    _ => None,
                })
            }
            "call_expression" if call_name(n, src) == Some("strlen") => {
                let a = unwrap(*args(n).first()?);
                match a.kind() {
                    "string_literal" => literal_len(text(a, src)),
                    _ => self.readable.get(text(a, src)).map(|r| r - 1),
                }
            }
            "identifier" => file_mode_constant(t),
            _ => None,
        }
    }
}

/// A printf format with a conversion of unbounded length: `%s`, or a floating-point one
/// (`%f` of 1e300 is 300 digits), whatever its flags, width or precision.
fn unbounded_conversion(format: &str) -> bool {
    format.split('%').skip(1).any(|spec| {
        let conv = spec.trim_start_matches(|c: char| "-+ #0123456789.*lhzjtL".contains(c));
        conv.starts_with(['s', 'f', 'F', 'e', 'E', 'g', 'G'])
    })
}

/// `<sys/stat.h>` mode bits.
fn file_mode_constant(name: &str) -> Option<i64> {
    Some(match name {
        "S_IRWXU" => 0o700,
        "S_IRUSR" => 0o400,
        "S_IWUSR" => 0o200,
        "S_IXUSR" => 0o100,
        "S_IRWXG" => 0o070,
        "S_IRGRP" => 0o040,
        "S_IWGRP" => 0o020,
        "S_IXGRP" => 0o010,
        "S_IRWXO" => 0o007,
        "S_IROTH" => 0o004,
        "S_IWOTH" => 0o002,
        "S_IXOTH" => 0o001,
        _ => return None,
    })
}

/// One function's nodes, in source order, and the conditions that guard them.
struct Function<'t, 's> {
    nodes: Vec<Node<'t>>,
    /// Conditions of if/while/for/?:, and assert(...) calls.
    conditions: Vec<Node<'t>>,
    src: &'s [u8],
}

impl<'t, 's> Function<'t, 's> {
    fn new(f: Node<'t>, src: &'s [u8]) -> Self {
        let nodes = preorder(f);
        let conditions = nodes
            .iter()
            .filter_map(|n| match n.kind() {
                "if_statement" | "while_statement" | "do_statement" | "for_statement" | "conditional_expression" => {
                    n.child_by_field_name("condition")
                }
                "call_expression" if call_name(*n, src) == Some("assert") => Some(*n),
                _ => None,
            })
            .collect();
        Function { nodes, conditions, src }
    }

    fn text(&self, n: Node<'_>) -> &'s str {
        text(n, self.src)
    }

    fn finding(&self, rule: &str, at: Node<'_>, message: String) -> PatternFinding {
        PatternFinding {
            rule: rule.into(),
            line: line(at),
            message,
        }
    }

    /// Conditions that start before `at` and after `from` (bytes).
    fn guards_between(&self, from: usize, at: usize) -> impl Iterator<Item = &Node<'t>> {
        self.conditions
            .iter()
            .filter(move |c| c.start_byte() >= from && c.start_byte() < at)
    }

    /// The ordering comparisons of `name` within `cond`, each as (operator with `name` on its
    /// left, the other side): `3 > i` is `("<", "3")`.
    fn compared_with(&self, cond: Node<'_>, name: &str) -> Vec<(&'static str, String)> {
        preorder(cond)
            .into_iter()
            .filter(|n| n.kind() == "binary_expression")
            .filter_map(|b| {
                let (op, flipped) = match self.text(b.child_by_field_name("operator")?) {
                    "<" => ("<", ">"),
                    "<=" => ("<=", ">="),
                    ">" => (">", "<"),
                    ">=" => (">=", "<="),
                    _ => return None,
                };
                let (l, r) = (b.child_by_field_name("left")?, b.child_by_field_name("right")?);
                if self.text(unwrap(l)) == name {
                    Some((op, self.text(r).to_string()))
                } else if self.text(unwrap(r)) == name {
                    Some((flipped, self.text(l).to_string()))
                } else {
                    None
                }
            })
            .collect()
    }

    fn declared_unsigned(&self, name: &str) -> bool {
        self.nodes.iter().any(|n| {
            (n.kind() == "declaration" || n.kind() == "parameter_declaration")
                && n.child_by_field_name("type").is_some_and(|t| {
                    let t = self.text(t);
                    t.starts_with("unsigned") || t == "size_t" || (t.starts_with("uint") && t.ends_with("_t"))
                })
                && n.child_by_field_name("declarator")
                    .and_then(|d| declared_name(d, self.src))
                    .is_some_and(|d| d == name)
        })
    }

    /// The values `name` is given (declarations and plain assignments).
    fn assigned_values(&self, name: &str) -> Vec<Node<'t>> {
        self.nodes
            .iter()
            .filter_map(|n| match n.kind() {
                "init_declarator" => Some((n.child_by_field_name("declarator")?, n.child_by_field_name("value")?)),
                "assignment_expression" if n.child_by_field_name("operator").is_some_and(|o| self.text(o) == "=") => {
                    Some((n.child_by_field_name("left")?, n.child_by_field_name("right")?))
                }
                _ => None,
            })
            .filter(|(target, _)| declared_name(*target, self.src) == Some(name))
            .map(|(_, value)| value)
            .collect()
    }

    /// A loop variable of an enclosing `for` whose condition bounds it.
    fn loop_bounded(&self, at: Node<'_>, name: &str) -> bool {
        let mut p = at.parent();
        while let Some(n) = p {
            if n.kind() == "for_statement"
                && n.child_by_field_name("condition")
                    .is_some_and(|c| mentions(self.text(c), name))
            {
                return true;
            }
            p = n.parent();
        }
        false
    }

    /// CWE-125/119: an index from outside used without checking both bounds, or a constant
    /// index past an array's end.
    fn unchecked_index(&self, sizes: &Sizes, out: &mut Vec<PatternFinding>) {
        for s in self.nodes.iter().filter(|n| n.kind() == "subscript_expression") {
            let (Some(array), Some(index)) = (s.child_by_field_name("argument"), s.child_by_field_name("index")) else {
                continue;
            };
            let array = self.text(array);
            let index = unwrap(index);
            if let Some(i) = sizes.eval(index, self.src) {
                if let Some(&n) = sizes.elements.get(array).filter(|&&n| i >= n || i < 0) {
                    out.push(self.finding(
                        "unchecked-index",
                        *s,
                        format!(
                            "`{array}[{}]` ({i}) is outside the array's {n} elements",
                            self.text(index)
                        ),
                    ));
                }
                continue;
            }
            match index.kind() {
                "call_expression" if call_name(index, self.src).is_some_and(|f| INPUT.contains(&f)) => {
                    out.push(self.finding(
                        "unchecked-index",
                        *s,
                        format!("`{}` indexes `{array}` straight from input", self.text(index)),
                    ));
                }
                "identifier" => {
                    let name = self.text(index);
                    // `len = strlen(input); ... input[len]`: bounded by the array itself.
                    let values = self.assigned_values(name);
                    let length_of_array = |v: &Node| {
                        let t = self.text(*v);
                        (t.contains("strlen") || t.contains("sizeof")) && mentions(t, array)
                    };
                    let from_array = !values.is_empty() && values.iter().all(length_of_array);
                    if from_array || self.loop_bounded(*s, name) {
                        continue;
                    }
                    let compared: Vec<(&str, String)> = self
                        .guards_between(0, s.start_byte())
                        .flat_map(|c| self.compared_with(*c, name))
                        .collect();
                    let is_low = |o: &str| parse_int(o.trim()).is_some_and(|v| v <= 1) || o.trim() == "-1";
                    // Starting at 0 and only counted up (`i = 0; while (...) i++`) needs no check.
                    let from_zero = !values.is_empty()
                        && values.iter().all(|v| sizes.eval(*v, self.src).is_some_and(|c| c >= 0))
                        && !self.nodes.iter().any(|n| {
                            n.kind() == "update_expression"
                                && n.child_by_field_name("operator").is_some_and(|o| self.text(o) == "--")
                                && n.child_by_field_name("argument").is_some_and(|a| self.text(a) == name)
                        });
                    let lower = from_zero || self.declared_unsigned(name) || compared.iter().any(|(_, o)| is_low(o));
                    // An upper bound that is a constant must fit the array: `i < 3` and `i >= 3`
                    // (rejecting) allow up to 2, `i <= 3` and `i > 3` up to 3.
                    let fits = |op: &str, other: &str| match (parse_int(other.trim()), sizes.elements.get(array)) {
                        (Some(c), Some(&n)) => match op {
                            "<" | ">=" => c <= n,
                            _ => c < n,
                        },
                        _ => true,
                    };
                    let upper = compared.iter().any(|(op, o)| !is_low(o) && fits(op, o));
                    if !(lower && upper) {
                        let missing = match (lower, upper) {
                            (false, false) => "any bound",
                            (false, true) => "the lower bound",
                            _ => "an upper bound that fits the array",
                        };
                        out.push(self.finding(
                            "unchecked-index",
                            *s,
                            format!("index `{name}` of `{array}` is used without checking {missing}"),
                        ));
                    }
                }
                _ => {}
            }
        }
    }

    /// CWE-190: an addition to a value from input or `rand()` with no overflow check before it.
    fn unguarded_addition(&self, out: &mut Vec<PatternFinding>) {
        let mut tainted: HashMap<&str, usize> = HashMap::new();
        for n in &self.nodes {
            let (target, value) = match n.kind() {
                "init_declarator" => (n.child_by_field_name("declarator"), n.child_by_field_name("value")),
                "assignment_expression" => (n.child_by_field_name("left"), n.child_by_field_name("right")),
                "call_expression" if call_name(*n, self.src).is_some_and(|f| f.ends_with("scanf")) => {
                    for a in args(*n) {
                        if let Some(v) = self.text(a).strip_prefix('&') {
                            tainted.entry(v.trim()).or_insert(n.end_byte());
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            let (Some(target), Some(value)) = (target, value) else {
                continue;
            };
            if preorder(value)
                .iter()
                .any(|v| call_name(*v, self.src).is_some_and(|f| INPUT.contains(&f)))
            {
                if let Some(name) = declared_name(target, self.src) {
                    tainted.entry(name).or_insert(n.end_byte());
                }
            }
        }
        let checked_builtin = self
            .nodes
            .iter()
            .any(|n| call_name(*n, self.src).is_some_and(|f| f.starts_with("__builtin_") && f.ends_with("_overflow")));
        if checked_builtin {
            return;
        }
        for n in &self.nodes {
            let operands = match n.kind() {
                "binary_expression" if n.child_by_field_name("operator").is_some_and(|o| self.text(o) == "+") => {
                    vec![n.child_by_field_name("left"), n.child_by_field_name("right")]
                }
                "assignment_expression" if n.child_by_field_name("operator").is_some_and(|o| self.text(o) == "+=") => {
                    vec![n.child_by_field_name("left"), n.child_by_field_name("right")]
                }
                _ => continue,
            };
            for op in operands.into_iter().flatten().map(unwrap) {
                let name = self.text(op);
                let from_input = match op.kind() {
                    "call_expression" => call_name(op, self.src).is_some_and(|f| f == "rand" || f == "random"),
                    "identifier" => tainted.get(name).is_some_and(|&at| at <= n.start_byte()),
                    _ => false,
                };
                // A check against *_MAX, or any upper bound on the value, before the addition.
                let guarded = self.guards_between(0, n.start_byte()).any(|c| {
                    (mentions(self.text(*c), name) && self.text(*c).contains("_MAX"))
                        || self
                            .compared_with(*c, name)
                            .iter()
                            .any(|(_, o)| parse_int(o.trim()).is_some_and(|v| v > 1))
                });
                if from_input && !guarded {
                    out.push(self.finding(
                        "unguarded-addition",
                        *n,
                        format!(
                            "`{}` adds to `{name}` (from input) without checking for overflow first",
                            self.text(*n)
                        ),
                    ));
                    break;
                }
            }
        }
    }

    /// CWE-476: memory from malloc & co. used before any test of the pointer.
    fn missing_null_test(&self, out: &mut Vec<PatternFinding>) {
        const ALLOC: [&str; 5] = ["malloc", "calloc", "realloc", "strdup", "aligned_alloc"];
        const DEREF: [&str; 12] = [
            "strcpy", "strncpy", "memcpy", "memmove", "memset", "fgets", "fread", "sprintf", "snprintf", "strcat",
            "gets", "read",
        ];
        for n in &self.nodes {
            let (target, value) = match n.kind() {
                "init_declarator" => (n.child_by_field_name("declarator"), n.child_by_field_name("value")),
                "assignment_expression" => (n.child_by_field_name("left"), n.child_by_field_name("right")),
                _ => continue,
            };
            let (Some(target), Some(value)) = (target, value) else {
                continue;
            };
            if !call_name(value, self.src).is_some_and(|f| ALLOC.contains(&f)) {
                continue;
            }
            let Some(p) = declared_name(target, self.src) else {
                continue;
            };
            let after = n.end_byte();
            let first_use = self
                .nodes
                .iter()
                .filter(|u| u.start_byte() >= after)
                .find(|u| match u.kind() {
                    "field_expression" | "pointer_expression" | "subscript_expression" => {
                        u.child_by_field_name("argument")
                            .is_some_and(|a| self.text(unwrap(a)) == p)
                            && (u.kind() != "pointer_expression"
                                || u.child_by_field_name("operator").is_some_and(|o| self.text(o) == "*"))
                    }
                    "call_expression" => {
                        call_name(**u, self.src).is_some_and(|f| DEREF.contains(&f))
                            && args(**u).iter().any(|a| self.text(unwrap(*a)) == p)
                    }
                    _ => false,
                });
            let Some(used) = first_use else { continue };
            // `if ((p = malloc(n)) == NULL)` tests it in the allocation's own condition.
            if !self
                .guards_between(
                    n.start_byte().min(self.enclosing_condition_start(*n)),
                    used.start_byte(),
                )
                .any(|c| mentions(self.text(*c), p))
            {
                out.push(self.finding(
                    "missing-null-test",
                    *used,
                    format!(
                        "`{p}` from {} is used without a NULL test",
                        call_name(value, self.src).unwrap_or("")
                    ),
                ));
            }
        }
    }

    /// Where the condition containing `n` starts (or `n`'s end, when it is in none).
    fn enclosing_condition_start(&self, n: Node<'_>) -> usize {
        self.conditions
            .iter()
            .find(|c| c.start_byte() <= n.start_byte() && n.end_byte() <= c.end_byte())
            .map(|c| c.start_byte())
            .unwrap_or(n.end_byte())
    }

    /// CWE-416: a freed pointer read, written or freed again before it is reassigned.
    fn use_after_free(&self, out: &mut Vec<PatternFinding>) {
        for call in self.nodes.iter().filter(|n| call_name(**n, self.src) == Some("free")) {
            let Some(arg) = args(*call).first().map(|a| unwrap(*a)) else {
                continue;
            };
            let freed = self.text(arg);
            // `if (err) { free(p); return 1; }`: the code after the block never sees it freed.
            let mut scope = call.end_byte()..usize::MAX;
            let mut p = call.parent();
            while let Some(block) = p {
                if block.kind() == "compound_statement" {
                    let leaves = preorder(block).iter().any(|x| {
                        x.start_byte() > call.end_byte()
                            && (matches!(x.kind(), "return_statement" | "break_statement" | "goto_statement")
                                || matches!(call_name(*x, self.src), Some("exit" | "abort")))
                    });
                    if leaves {
                        scope.end = block.end_byte();
                    }
                    break;
                }
                p = block.parent();
            }
            for n in self.nodes.iter().filter(|n| scope.contains(&n.start_byte())) {
                if n.kind() == "assignment_expression"
                    && n.child_by_field_name("left").is_some_and(|l| self.text(l) == freed)
                {
                    break;
                }
                if matches!(n.kind(), "identifier" | "field_expression") && self.text(*n) == freed {
                    out.push(self.finding(
                        "use-after-free",
                        *n,
                        format!("`{freed}` is used after `free({freed})` on line {}", line(*call)),
                    ));
                    break;
                }
            }
        }
    }

    /// CWE-787/119: copies with no bound (gets, strcpy of a variable, sprintf of %s/%f), sizes
    /// known to exceed a buffer, and copy loops bounded by something other than the
    /// destination's capacity.
    fn unbounded_copy(&self, sizes: &Sizes, out: &mut Vec<PatternFinding>) {
        for call in self.nodes.iter().filter(|n| n.kind() == "call_expression") {
            let Some(f) = call_name(*call, self.src) else { continue };
            let a = args(*call);
            let arg = |i: usize| a.get(i).map(|n| unwrap(*n));
            let message = match f {
                "gets" => Some("gets() cannot bound what it reads".to_string()),
                "strcpy" | "strcat" | "stpcpy" => arg(1)
                    .filter(|s| s.kind() != "string_literal")
                    .map(|s| format!("{f}() of `{}` is bounded only by its source", self.text(s))),
                "sprintf" | "vsprintf" => arg(1).and_then(|fmt| {
                    let t = self.text(fmt);
                    let unbounded = fmt.kind() != "string_literal" || unbounded_conversion(t);
                    unbounded.then(|| format!("{f}() with format {t} has no bound on what it writes"))
                }),
                _ => None,
            };
            if let Some(m) = message {
                out.push(self.finding("unbounded-copy", *call, m));
                continue;
            }
            // (destination, source, size) of the bounded copies.
            let (dst, src, size) = match f {
                "memcpy" | "memmove" | "strncpy" => (arg(0), arg(1), arg(2).and_then(|s| sizes.eval(s, self.src))),
                "memset" => (arg(0), None, arg(2).and_then(|s| sizes.eval(s, self.src))),
                "fgets" | "snprintf" => (arg(0), None, arg(1).and_then(|s| sizes.eval(s, self.src))),
                "read" => (arg(1), None, arg(2).and_then(|s| sizes.eval(s, self.src))),
                _ => continue,
            };
            let Some(size) = size else {
                // memcpy(name, argv[1], strlen(argv[1]) + 1): bounded by the source, not by
                // the destination, unless that length was checked first.
                let size_arg = match f {
                    "memcpy" | "memmove" | "strncpy" | "memset" | "read" => arg(2),
                    _ => arg(1),
                };
                let from_source_length = size_arg.is_some_and(|z| self.text(z).contains("strlen"));
                let dst_known = dst.is_some_and(|d| sizes.bytes.contains_key(self.text(d)));
                let checked = self
                    .guards_between(0, call.start_byte())
                    .any(|c| self.text(*c).contains("strlen"));
                if from_source_length && dst_known && !checked {
                    out.push(self.finding(
                        "unbounded-copy",
                        *call,
                        format!(
                            "{f}() copies as much as its source holds, not what `{}` holds",
                            self.text(dst.expect("known"))
                        ),
                    ));
                }
                continue;
            };
            if let Some(cap) = dst.and_then(|d| sizes.bytes.get(self.text(d))) {
                if size > *cap {
                    out.push(self.finding(
                        "unbounded-copy",
                        *call,
                        format!("{f}() writes {size} bytes into a {cap}-byte buffer"),
                    ));
                    continue;
                }
            }
            if let Some(s) = src {
                let readable = if s.kind() == "string_literal" {
                    literal_len(self.text(s)).map(|l| l + 1)
                } else {
                    sizes
                        .readable
                        .get(self.text(s))
                        .or_else(|| sizes.bytes.get(self.text(s)))
                        .copied()
                };
                if let Some(r) = readable.filter(|r| size > *r) {
                    out.push(self.finding(
                        "unbounded-copy",
                        *call,
                        format!("{f}() reads {size} bytes from `{}`, which has {r}", self.text(s)),
                    ));
                }
            }
        }
        self.copy_loops(sizes, out);
    }

    /// `for (i = 0; i < B; i++) dst[i] = ...`: B must be the destination's capacity (a constant
    /// that fits, or an expression about the destination itself).
    fn copy_loops(&self, sizes: &Sizes, out: &mut Vec<PatternFinding>) {
        let mut reported = HashSet::new();
        for a in self.nodes.iter().filter(|n| n.kind() == "assignment_expression") {
            let Some(left) = a
                .child_by_field_name("left")
                .filter(|l| l.kind() == "subscript_expression")
            else {
                continue;
            };
            let (Some(dst), Some(index)) = (left.child_by_field_name("argument"), left.child_by_field_name("index"))
            else {
                continue;
            };
            let (dst, index) = (self.text(dst), self.text(unwrap(index)));
            let Some(lp) = self.enclosing_for(*a, index) else {
                continue;
            };
            if !reported.insert(lp.id()) {
                continue;
            }
            let cond = lp.child_by_field_name("condition").expect("enclosing_for checks it");
            let capacity = sizes.elements.get(dst).copied();
            // A bound fits when it is about the destination itself (`returnChunkSize(chunk2)`, a
            // variable set from it; but not its size in bytes unless those are its elements) or
            // a constant within its capacity (`i < 10` or `i <= 9` for 10 elements).
            let fits = self.compared_with(cond, index).iter().any(|(op, bound)| {
                let fits_capacity = |b: Option<i64>| {
                    b.is_some_and(|b| capacity.is_some_and(|c| if *op == "<=" { b < c } else { b <= c }))
                };
                let about_dst = |t: &str| {
                    mentions(t, dst)
                        && !(t.contains("sizeof") && !t.contains('/') && sizes.bytes.get(dst).copied() != capacity)
                };
                let bound = bound.trim();
                if !matches!(*op, "<" | "<=") {
                    return false;
                }
                if about_dst(bound) || fits_capacity(parse_int(bound)) {
                    return true;
                }
                let values = self.assigned_values(bound);
                !values.is_empty()
                    && values
                        .iter()
                        .all(|v| about_dst(self.text(*v)) || fits_capacity(sizes.eval(*v, self.src)))
            });
            if !fits {
                out.push(self.finding(
                    "unbounded-copy",
                    lp,
                    format!(
                        "the loop writing `{dst}[{index}]` is bounded by `{}`, not by `{dst}`'s capacity",
                        self.text(cond)
                    ),
                ));
            }
        }
    }

    fn enclosing_for(&self, at: Node<'t>, index: &str) -> Option<Node<'t>> {
        let mut p = at.parent();
        while let Some(n) = p {
            if n.kind() == "for_statement"
                && n.child_by_field_name("condition")
                    .is_some_and(|c| mentions(self.text(c), index))
            {
                return Some(n);
            }
            p = n.parent();
        }
        None
    }

    /// CWE-732: files or directories created or chmod-ed writable by everyone.
    fn world_writable(&self, out: &mut Vec<PatternFinding>) {
        let sizes = Sizes::default();
        for call in self.nodes.iter().filter(|n| n.kind() == "call_expression") {
            let Some(f) = call_name(*call, self.src) else { continue };
            let a = args(*call);
            let mode = match f {
                "open" if a.len() == 3 => a.get(2),
                "openat" if a.len() == 4 => a.get(3),
                "creat" | "chmod" | "fchmod" | "mkdir" | "mkfifo" => a.get(1),
                "fchmodat" => a.get(2),
                _ => None,
            };
            let Some(mode) = mode.and_then(|m| sizes.eval(unwrap(*m), self.src)) else {
                continue;
            };
            if mode & 0o002 != 0 {
                out.push(self.finding(
                    "world-writable-file",
                    *call,
                    format!("{f}() with mode {mode:#o} is world-writable"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    fn rules(src: &str) -> Vec<(String, usize)> {
        check(src).into_iter().map(|f| (f.rule, f.line)).collect()
    }

    fn main_of(body: &str) -> String {
        format!("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\nint main(int argc, char *argv[]) {{\n{body}\n}}\n")
    }

    #[test]
    fn indexes_need_both_bounds() {
        let bad = main_of("    int seq[3] = {1, 5, 7};\n    int i = atoi(argv[1]);\n    if (i < 3) printf(\"%d\", seq[i]);\n    return 0;");
        assert_eq!(rules(&bad), [("unchecked-index".to_string(), 7)]);
        let good = main_of("    int seq[3] = {1, 5, 7};\n    int i = atoi(argv[1]);\n    if (i >= 0 && i < 3) printf(\"%d\", seq[i]);\n    return 0;");
        assert!(rules(&good).is_empty(), "{:?}", rules(&good));
        let past_end = main_of("    int seq[3] = {1, 5, 7};\n    printf(\"%d\", seq[3]);\n    return 0;");
        assert_eq!(rules(&past_end), [("unchecked-index".to_string(), 6)]);
        let looped = main_of("    int a[4];\n    for (int i = 0; i < 4; i++) a[i] = i;\n    return a[0];");
        assert!(rules(&looped).is_empty(), "{:?}", rules(&looped));
    }

    #[test]
    fn additions_to_input_need_an_overflow_check_first() {
        let after =
            main_of("    int v = atoi(argv[1]);\n    v = v + 100000000;\n    if (v < 0) return 1;\n    return 0;");
        assert_eq!(rules(&after), [("unguarded-addition".to_string(), 6)]);
        let before = main_of("    int v = atoi(argv[1]);\n    if (v > INT_MAX - 100000000) return 1;\n    v = v + 100000000;\n    return 0;");
        assert!(rules(&before).is_empty(), "{:?}", rules(&before));
        assert_eq!(
            rules(&main_of("    int r = rand() + 1000;\n    return r;")),
            [("unguarded-addition".to_string(), 5)]
        );
        assert!(rules(&main_of("    int r = 1001 + rand() % 1000;\n    return r;")).is_empty());
    }

    #[test]
    fn allocations_need_a_null_test_before_use() {
        let bad = main_of("    char *buf = malloc(1024);\n    fgets(buf, 100, stdin);\n    return 0;");
        assert_eq!(rules(&bad), [("missing-null-test".to_string(), 6)]);
        let good = main_of(
            "    char *buf = malloc(1024);\n    if (buf == NULL) return 1;\n    fgets(buf, 100, stdin);\n    return 0;",
        );
        assert!(rules(&good).is_empty(), "{:?}", rules(&good));
        let field = main_of("    struct { int s; } *p = malloc(8);\n    p->s = 0;\n    return 0;");
        assert_eq!(rules(&field), [("missing-null-test".to_string(), 6)]);
    }

    #[test]
    fn freed_pointers_must_not_be_used() {
        let bad = main_of(
            "    char *b = malloc(8);\n    if (!b) return 1;\n    free(b);\n    printf(\"%s\", b);\n    return 0;",
        );
        assert_eq!(rules(&bad), [("use-after-free".to_string(), 8)]);
        let reset = main_of("    char *b = malloc(8);\n    if (!b) return 1;\n    free(b);\n    b = NULL;\n    printf(\"%p\", b);\n    return 0;");
        assert!(rules(&reset).is_empty(), "{:?}", rules(&reset));
    }

    #[test]
    fn copies_must_be_bounded() {
        assert_eq!(
            rules(&main_of("    char s[16];\n    sprintf(s, \"%f\", 1.0);\n    return 0;")),
            [("unbounded-copy".to_string(), 6)]
        );
        assert!(rules(&main_of(
            "    char s[16];\n    snprintf(s, sizeof(s), \"%f\", 1.0);\n    return 0;"
        ))
        .is_empty());
        assert_eq!(
            rules(&main_of("    char d[8];\n    strcpy(d, argv[1]);\n    return 0;")),
            [("unbounded-copy".to_string(), 6)]
        );
        let over_read =
            main_of("    const char *m = \"Hello\";\n    char b[256];\n    memcpy(b, m, sizeof(b));\n    return 0;");
        assert_eq!(rules(&over_read), [("unbounded-copy".to_string(), 7)]);
        let fits = main_of(
            "    const char *m = \"Hello\";\n    char b[256];\n    memcpy(b, m, strlen(m) + 1);\n    return 0;",
        );
        assert!(rules(&fits).is_empty(), "{:?}", rules(&fits));
        let lp = main_of("    int *a = malloc(sizeof(int) * 10);\n    int *b = malloc(sizeof(int) * 10);\n    if (!a || !b) return 1;\n    int n = atoi(argv[1]);\n    for (int i = 0; i < n; i++) b[i] = a[i];\n    return 0;");
        assert!(
            rules(&lp).contains(&("unbounded-copy".to_string(), 9)),
            "{:?}",
            rules(&lp)
        );
        let lp_ok = main_of("    int *a = malloc(sizeof(int) * 10);\n    int *b = malloc(sizeof(int) * 10);\n    if (!a || !b) return 1;\n    for (int i = 0; i < 10; i++) b[i] = a[i];\n    return 0;");
        assert!(rules(&lp_ok).is_empty(), "{:?}", rules(&lp_ok));
        let lp_own = main_of("    int *b = malloc(sizeof(int) * 10);\n    if (!b) return 1;\n    int n = returnChunkSize(b);\n    for (int i = 0; i < n; i++) b[i] = 0;\n    return 0;");
        assert!(rules(&lp_own).is_empty(), "{:?}", rules(&lp_own));
        let trimmed = main_of("    char *s = argv[1];\n    int len = strlen(s);\n    while (len > 0 && s[len - 1] == ' ') len--;\n    s[len] = 0;\n    return 0;");
        assert!(rules(&trimmed).is_empty(), "{:?}", rules(&trimmed));
        let from_argv = main_of("    int i = atoi(argv[1]);\n    printf(\"%s\", argv[i]);\n    return 0;");
        assert_eq!(rules(&from_argv), [("unchecked-index".to_string(), 6)]);
    }

    #[test]
    fn world_writable_modes_are_flagged() {
        assert_eq!(
            rules(&main_of(
                "    int fd = open(\"c.txt\", O_CREAT | O_WRONLY, 0666);\n    return fd;"
            )),
            [("world-writable-file".to_string(), 5)]
        );
        assert!(rules(&main_of(
            "    int fd = open(\"c.txt\", O_CREAT | O_WRONLY, S_IRUSR | S_IWUSR);\n    return fd;"
        ))
        .is_empty());
        assert_eq!(
            rules(&main_of("    chmod(\"c.txt\", S_IRWXU | S_IRWXO);\n    return 0;")),
            [("world-writable-file".to_string(), 5)]
        );
    }

    #[test]
    fn review_cases_judge_as_a_careful_reader_would() {
        let clean = |body: &str| {
            let r = rules(&main_of(body));
            assert!(r.is_empty(), "{body}: {r:?}");
        };
        let flagged = |body: &str, rule: &str| {
            let r = rules(&main_of(body));
            assert!(r.iter().any(|(x, _)| x == rule), "{body}: {r:?}");
        };
        // A bounded copy loop, then its terminating NUL (for and while forms).
        clean("    char name[16];\n    int i;\n    for (i = 0; i < 15 && argv[1][i] != 0; i++) name[i] = argv[1][i];\n    name[i] = 0;\n    return 0;");
        clean("    char name[16];\n    int i = 0;\n    while (i < 15 && argv[1][i]) { name[i] = argv[1][i]; i++; }\n    name[i] = 0;\n    return 0;");
        // Off by one, or a bound that does not fit.
        flagged(
            "    int a[10];\n    for (int i = 0; i <= 10; i++) a[i] = i;\n    return 0;",
            "unbounded-copy",
        );
        flagged(
            "    int a[10];\n    for (int i = 0; i < sizeof(a); i++) a[i] = 0;\n    return 0;",
            "unbounded-copy",
        );
        flagged("    int seq[3] = {1, 2, 3};\n    int i = atoi(argv[1]);\n    if (i < 0 || i > 3) return 1;\n    return seq[i];", "unchecked-index");
        clean("    int seq[3] = {1, 2, 3};\n    int i = atoi(argv[1]);\n    if (i < 0 || i > 2) return 1;\n    return seq[i];");
        flagged(
            "    int seq[3] = {1, 2, 3};\n    return seq[atoi(argv[1])];",
            "unchecked-index",
        );
        flagged(
            "    char name[16];\n    name[sizeof(name)] = 0;\n    return 0;",
            "unchecked-index",
        );
        // Copies sized by their source.
        flagged(
            "    char name[16];\n    memcpy(name, argv[1], strlen(argv[1]) + 1);\n    return 0;",
            "unbounded-copy",
        );
        clean("    char name[16];\n    if (strlen(argv[1]) >= sizeof(name)) return 1;\n    memcpy(name, argv[1], strlen(argv[1]) + 1);\n    return 0;");
        // Fixed-width types, formats with widths, realloc.
        flagged(
            "    uint8_t buf[16];\n    memcpy(buf, argv[0], 64);\n    return 0;",
            "unbounded-copy",
        );
        flagged(
            "    char b[16];\n    sprintf(b, \"Hello, %-10s!\", argv[1]);\n    return 0;",
            "unbounded-copy",
        );
        clean("    char b[16];\n    sprintf(b, \"%d\", argc);\n    return 0;");
        clean("    char *b = malloc(16);\n    if (!b) return 1;\n    char *t = realloc(b, 256);\n    if (!t) return 1;\n    b = t;\n    memset(b, 0, 200);\n    return 0;");
        // Error paths, NULL tests in the allocation's condition, bounded additions.
        clean("    char *buf = malloc(8);\n    if (!buf) return 1;\n    if (argc < 2) { free(buf); return 1; }\n    buf[0] = argv[1][0];\n    return 0;");
        clean("    char *p;\n    if ((p = malloc(16)) == NULL) return 1;\n    strcpy(p, \"hi\");\n    return 0;");
        clean("    int value = atoi(argv[1]);\n    if (value < 0 || value > 1000) return 1;\n    int result = value + 100000000;\n    return result;");
        // An unsigned typedef needs no lower bound; a comma expression is no panic.
        let unsigned =
            "int get(int *arr, uint32_t idx, uint32_t n) {\n    if (idx >= n) return -1;\n    return arr[idx];\n}\n";
        assert!(rules(unsigned).is_empty(), "{:?}", rules(unsigned));
        rules(&main_of(
            "    char *p = malloc((sizeof(char), 16));\n    return p == 0;",
        ));
    }

    #[test]
    fn buffer_sizes_belong_to_their_function() {
        let src = "#include <string.h>\nvoid a(void) {\n    char buf[256];\n    buf[100] = 0;\n    memset(buf, 0, 200);\n}\nvoid b(void) {\n    char buf[8];\n    buf[0] = 0;\n}\n";
        assert!(rules(src).is_empty(), "{:?}", rules(src));
    }
}
