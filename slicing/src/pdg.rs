//! A statement-level program dependence graph. Nodes are statements (a compound statement is
//! its header); a data edge runs from a statement that defines a variable to one that uses it
//! while that definition may still hold, a control edge from a compound statement to each
//! statement directly inside it.
//!
//! Reaching definitions are approximated from source order: a use depends on the last earlier
//! definition in each enclosing context (so both arms of an `if` reach past it), and, inside a
//! loop, on the loop's later definitions too. Names are variables: `obj.x = v` and `a[i] = v`
//! define (and use) `obj` and `a`; a C call's `&x` argument, and the destination of the copying
//! calls (`strcpy`, `memcpy`, `read`, …), define their variable.

use std::collections::{BTreeSet, HashSet};

use secvec_artifacts::language::Language;
use tree_sitter::Node;

use crate::syntax::{children, count_errors, is_statement, parse, BODIES, COMPOUND, LOOPS, SIMPLE};

/// C functions that write into their first argument.
const WRITES_FIRST: &[&str] = &[
    "strcpy",
    "strncpy",
    "strcat",
    "strncat",
    "memcpy",
    "memmove",
    "memset",
    "sprintf",
    "snprintf",
    "vsprintf",
    "vsnprintf",
    "fgets",
    "gets",
    "read",
    "recv",
    "fread",
    "strlcpy",
    "strlcat",
    "scanf_s",
];

#[derive(Clone, Debug)]
pub struct Statement {
    pub kind: String,
    /// The statement's own lines (0-based): all of a simple statement, a compound statement's
    /// header.
    pub lines: Vec<usize>,
    /// Every line the statement spans, body included.
    pub span: (usize, usize),
    pub defs: BTreeSet<String>,
    pub uses: BTreeSet<String>,
    /// The compound statement this one is directly inside.
    pub parent: Option<usize>,
}

#[derive(Debug, Default)]
pub struct Pdg {
    pub statements: Vec<Statement>,
    /// (definition, use) statement indices.
    pub data: Vec<(usize, usize)>,
    /// (compound statement, statement directly inside it).
    pub control: Vec<(usize, usize)>,
    /// ERROR and MISSING nodes in the parse: 0 when tree-sitter parsed everything.
    pub parse_errors: usize,
}

impl Pdg {
    /// The graph of `code`; empty for a language secvec does not slice.
    pub fn build(language: Language, code: &str) -> Pdg {
        let Some(tree) = parse(language, code) else {
            return Pdg::default();
        };
        let src = code.as_bytes();
        let mut pdg = Pdg {
            parse_errors: count_errors(tree.root_node()),
            ..Pdg::default()
        };
        pdg.visit(tree.root_node(), None, src);
        pdg.connect_data();
        pdg
    }

    fn visit(&mut self, node: Node, parent: Option<usize>, src: &[u8]) {
        let kind = node.kind();
        if SIMPLE.contains(&kind) || COMPOUND.contains(&kind) {
            let compound = COMPOUND.contains(&kind);
            let parts = children(node);
            // A compound statement's header: everything but its body and nested statements.
            let header: Vec<Node> = if compound {
                parts
                    .iter()
                    .filter(|(_, c)| !BODIES.contains(&c.kind()) && !is_statement(c.kind()))
                    .map(|(_, c)| *c)
                    .collect()
            } else {
                vec![node]
            };
            let start = node.start_position().row;
            let end = if compound {
                let body_row = parts
                    .iter()
                    .filter(|(_, c)| BODIES.contains(&c.kind()) || is_statement(c.kind()))
                    .map(|(_, c)| c.start_position().row)
                    .min();
                let header_end = header.iter().map(|c| c.end_position().row).max().unwrap_or(start);
                match body_row {
                    Some(b) if b > start => header_end.min(b - 1).max(start),
                    Some(_) => start,
                    None => header_end,
                }
            } else {
                node.end_position().row
            };
            let mut names = Names::default();
            // A Python `for` header writes its target (the header parts are its children).
            if kind == "for_statement" {
                if let Some(left) = node.child_by_field_name("left") {
                    names.define(left, src, true);
                }
            }
            for h in &header {
                names.find_defs(*h, src);
            }
            for h in &header {
                names.find_uses(*h, src);
            }
            let index = self.statements.len();
            self.statements.push(Statement {
                kind: kind.to_string(),
                lines: (start..=end).collect(),
                span: (start, node.end_position().row),
                defs: names.defs,
                uses: names.uses,
                parent,
            });
            if let Some(p) = parent {
                self.control.push((p, index));
            }
            if compound {
                for (_, c) in parts {
                    if BODIES.contains(&c.kind()) || is_statement(c.kind()) {
                        self.visit(c, Some(index), src);
                    }
                }
            }
            return;
        }
        for (_, c) in children(node) {
            self.visit(c, parent, src);
        }
    }

    /// The compound statements around `s`, innermost first.
    fn ancestors(&self, s: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut p = self.statements[s].parent;
        while let Some(x) = p {
            out.push(x);
            p = self.statements[x].parent;
        }
        out
    }

    fn connect_data(&mut self) {
        let ancestors: Vec<Vec<usize>> = (0..self.statements.len()).map(|s| self.ancestors(s)).collect();
        let mut edges = BTreeSet::new();
        for (s, stmt) in self.statements.iter().enumerate() {
            for v in &stmt.uses {
                let defs: Vec<usize> = (0..self.statements.len())
                    .filter(|&d| d != s && self.statements[d].defs.contains(v))
                    .collect();
                // The last earlier definition in each context.
                let mut seen_context = HashSet::new();
                for &d in defs.iter().rev().filter(|&&d| d < s) {
                    if seen_context.insert(self.statements[d].parent) {
                        edges.insert((d, s));
                    }
                }
                // Later definitions in a loop around both reach the next iteration.
                for &d in defs.iter().filter(|&&d| d > s) {
                    let shared_loop = ancestors[s]
                        .iter()
                        .any(|a| ancestors[d].contains(a) && LOOPS.contains(&self.statements[*a].kind.as_str()));
                    if shared_loop {
                        edges.insert((d, s));
                    }
                }
            }
        }
        self.data = edges.into_iter().collect();
    }
}

/// Variables a header or statement defines and uses.
#[derive(Default)]
struct Names {
    defs: BTreeSet<String>,
    uses: BTreeSet<String>,
    /// Identifier nodes (by start byte) that are only written.
    written_only: HashSet<usize>,
}

impl Names {
    fn text(node: Node, src: &[u8]) -> String {
        node.utf8_text(src).unwrap_or_default().to_string()
    }

    /// The variable a target expression writes: `x`, `x.f`, `x[i]`, `*x`, `x->f` all write `x`.
    fn base(node: Node) -> Option<Node> {
        match node.kind() {
            "identifier" => Some(node),
            "attribute" | "subscript" => node
                .child_by_field_name("object")
                .or(node.child_by_field_name("value"))
                .and_then(Self::base),
            "field_expression"
            | "subscript_expression"
            | "pointer_expression"
            | "parenthesized_expression"
            | "pointer_declarator"
            | "array_declarator"
            | "init_declarator"
            | "reference_declarator" => {
                let inner = node
                    .child_by_field_name("argument")
                    .or(node.child_by_field_name("declarator"))
                    .or_else(|| children(node).into_iter().map(|(_, c)| c).find(|c| c.is_named()));
                inner.and_then(Self::base)
            }
            _ => None,
        }
    }

    fn define(&mut self, target: Node, src: &[u8], only_written: bool) {
        match target.kind() {
            // Python unpacking: every name in the pattern.
            "pattern_list" | "tuple_pattern" | "list_pattern" | "tuple" | "list" | "list_splat_pattern" => {
                for (_, c) in children(target) {
                    if c.is_named() {
                        self.define(c, src, only_written);
                    }
                }
            }
            _ => {
                if let Some(b) = Self::base(target) {
                    self.defs.insert(Self::text(b, src));
                    if only_written && b.id() == target.id() {
                        self.written_only.insert(b.start_byte());
                    }
                }
            }
        }
    }

    fn find_defs(&mut self, node: Node, src: &[u8]) {
        let field = |name: &str| node.child_by_field_name(name);
        match node.kind() {
            "assignment" | "assignment_expression" => {
                let plain = children(node)
                    .iter()
                    .any(|(f, c)| f == &Some("operator") && c.kind() == "=")
                    || node.kind() == "assignment";
                if let Some(left) = field("left") {
                    self.define(left, src, plain);
                }
            }
            "augmented_assignment" => {
                if let Some(left) = field("left") {
                    self.define(left, src, false);
                }
            }
            "update_expression" => {
                if let Some(arg) = field("argument") {
                    self.define(arg, src, false);
                }
            }
            "for_in_clause" => {
                if let Some(left) = field("left") {
                    self.define(left, src, true);
                }
            }
            "as_pattern" => {
                if let Some(alias) = field("alias") {
                    self.define(alias, src, true);
                }
            }
            "named_expression" => {
                if let Some(name) = field("name") {
                    self.define(name, src, true);
                }
            }
            "init_declarator" | "parameter_declaration" | "optional_parameter_declaration" => {
                if let Some(d) = field("declarator") {
                    self.define(d, src, true);
                }
            }
            "declaration" => {
                for (f, c) in children(node) {
                    if f == Some("declarator") && c.kind() != "init_declarator" {
                        self.define(c, src, true);
                    }
                }
            }
            "parameters" | "lambda_parameters" => {
                for (_, c) in children(node) {
                    let name = match c.kind() {
                        "identifier" => Some(c),
                        "default_parameter" | "typed_default_parameter" => c.child_by_field_name("name"),
                        "typed_parameter" | "list_splat_pattern" | "dictionary_splat_pattern" => children(c)
                            .into_iter()
                            .map(|(_, x)| x)
                            .find(|x| x.kind() == "identifier"),
                        _ => None,
                    };
                    if let Some(n) = name {
                        self.define(n, src, true);
                    }
                }
            }
            "import_statement" | "import_from_statement" | "aliased_import" => {
                for (f, c) in children(node) {
                    match (f, c.kind()) {
                        (Some("alias"), _) => self.define(c, src, true),
                        (Some("name"), "dotted_name") => {
                            if let Some(first) = c.named_child(0) {
                                self.define(first, src, true);
                            }
                        }
                        _ => {}
                    }
                }
            }
            "call_expression" => {
                let callee = field("function").map(|f| Self::text(f, src)).unwrap_or_default();
                if let Some(args) = field("arguments") {
                    let args: Vec<Node> = children(args)
                        .into_iter()
                        .map(|(_, c)| c)
                        .filter(|c| c.is_named())
                        .collect();
                    for a in &args {
                        if a.kind() == "pointer_expression"
                            && a.child_by_field_name("operator").is_some_and(|o| o.kind() == "&")
                        {
                            self.define(*a, src, false);
                        }
                    }
                    if WRITES_FIRST.contains(&callee.as_str()) {
                        if let Some(first) = args.first() {
                            self.define(*first, src, false);
                        }
                    }
                }
            }
            _ => {}
        }
        for (_, c) in children(node) {
            self.find_defs(c, src);
        }
    }

    fn find_uses(&mut self, node: Node, src: &[u8]) {
        let parent = node.parent();
        if node.kind() == "identifier" && !self.written_only.contains(&node.start_byte()) {
            // An attribute's name and a keyword argument's name are not variables.
            let is_member = parent.is_some_and(|p| {
                (p.kind() == "attribute" && p.child_by_field_name("attribute").is_some_and(|a| a.id() == node.id()))
                    || (p.kind() == "keyword_argument"
                        && p.child_by_field_name("name").is_some_and(|a| a.id() == node.id()))
            });
            if !is_member {
                self.uses.insert(Self::text(node, src));
            }
        }
        for (_, c) in children(node) {
            self.find_uses(c, src);
        }
    }
}
