//! Parsing with tree-sitter and what each grammar calls its statements.

use secvec_artifacts::language::Language;
use tree_sitter::{Node, Parser, Tree};

/// The grammar of a language secvec slices, if it slices it.
pub(crate) fn grammar(language: Language) -> Option<tree_sitter::Language> {
    Some(match language {
        Language::Python => tree_sitter_python::LANGUAGE.into(),
        Language::C => tree_sitter_c::LANGUAGE.into(),
        Language::Cpp => tree_sitter_cpp::LANGUAGE.into(),
        _ => return None,
    })
}

pub(crate) fn parse(language: Language, code: &str) -> Option<Tree> {
    let mut parser = Parser::new();
    parser
        .set_language(&grammar(language)?)
        .expect("the grammars match the tree-sitter version");
    parser.parse(code, None)
}

/// Statements with no statements inside: one PDG node each, all their lines.
pub(crate) const SIMPLE: &[&str] = &[
    // Python
    "expression_statement",
    "return_statement",
    "assert_statement",
    "raise_statement",
    "pass_statement",
    "break_statement",
    "continue_statement",
    "delete_statement",
    "import_statement",
    "import_from_statement",
    "global_statement",
    "nonlocal_statement",
    "print_statement",
    "exec_statement",
    // C and C++ (expression, return, break and continue statements share Python's names)
    "declaration",
    "goto_statement",
    "throw_statement",
];

/// Statements that hold statements: one PDG node each for their header lines (condition,
/// loop variables, parameters); what they hold is control dependent on them.
pub(crate) const COMPOUND: &[&str] = &[
    "function_definition",
    "class_definition",
    "if_statement",
    "elif_clause",
    "else_clause",
    "for_statement",
    "for_range_loop",
    "while_statement",
    "do_statement",
    "try_statement",
    "except_clause",
    "finally_clause",
    "with_statement",
    "match_statement",
    "case_clause",
    "switch_statement",
    "case_statement",
    "catch_clause",
];

/// Compound statements whose body may run again, so a later definition reaches an earlier use.
pub(crate) const LOOPS: &[&str] = &["for_statement", "for_range_loop", "while_statement", "do_statement"];

/// Containers of a compound statement's body: not part of its header.
pub(crate) const BODIES: &[&str] = &[
    "block",
    "compound_statement",
    "field_declaration_list",
    "declaration_list",
];

pub(crate) fn is_statement(kind: &str) -> bool {
    SIMPLE.contains(&kind) || COMPOUND.contains(&kind)
}

/// A node's children with the field each fills.
pub(crate) fn children<'t>(node: Node<'t>) -> Vec<(Option<&'t str>, Node<'t>)> {
    let mut cursor = node.walk();
    let mut out = Vec::new();
    if cursor.goto_first_child() {
        loop {
            out.push((cursor.field_name(), cursor.node()));
            if !cursor.goto_next_sibling() {
                break;
            }
        }
    }
    out
}

/// ERROR and MISSING nodes: where tree-sitter could not parse the code.
pub(crate) fn count_errors(node: Node) -> usize {
    let own = (node.is_error() || node.is_missing()) as usize;
    if !node.has_error() {
        return own;
    }
    own + children(node).into_iter().map(|(_, c)| count_errors(c)).sum::<usize>()
}
