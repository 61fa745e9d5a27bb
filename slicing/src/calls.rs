//! The APIs a piece of code calls, for Rescue's API facet: each call's callee as written
//! (`yaml.load`, `os.path.join`, `strcpy`, `ctx->write`), whitespace removed, first occurrence
//! first.

use secvec_artifacts::language::Language;
use tree_sitter::Node;

use crate::syntax::{children, parse};

pub fn api_calls(language: Language, code: &str) -> Vec<String> {
    let Some(tree) = parse(language, code) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    visit(tree.root_node(), code.as_bytes(), &mut out);
    out
}

fn visit(node: Node, src: &[u8], out: &mut Vec<String>) {
    if matches!(node.kind(), "call" | "call_expression") {
        if let Some(f) = node.child_by_field_name("function") {
            let name: String = f
                .utf8_text(src)
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    for (_, c) in children(node) {
        visit(c, src, out);
    }
}
