//! `secvec dag`: a plan's graph as text, Graphviz dot or Mermaid.

use std::fmt::Write;

use secvec_engine::plan::{Plan, Source};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// One line per stage with the stages it reads.
    Text,
    /// Graphviz: `secvec dag M --format dot | dot -Tsvg > dag.svg`.
    Dot,
    /// Mermaid, for Markdown that renders it (GitHub, GitLab).
    Mermaid,
}

/// Upstream stage names of a node, in input order, each once.
fn upstream(plan: &Plan, i: usize) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for (_, sources) in &plan.nodes[i].inputs {
        for s in sources {
            let name = match s {
                Source::Node(u) => plan.nodes[*u].name.as_str(),
                Source::Path { .. } => continue,
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

fn escaped(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", escaped(s))
}

pub fn render(plan: &Plan, format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Text => {
            for (i, n) in plan.nodes.iter().enumerate() {
                let from = upstream(plan, i);
                let _ = write!(out, "{} ({})", n.name, n.kind.kind());
                if !from.is_empty() {
                    let _ = write!(out, " <- {}", from.join(", "));
                }
                out.push('\n');
            }
        }
        Format::Dot => {
            let _ = writeln!(
                out,
                "digraph {} {{\n  rankdir=LR;\n  node [shape=box];",
                quoted(&plan.manifest_name)
            );
            for (i, n) in plan.nodes.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  {} [label=\"{}\\n{}\"];",
                    quoted(&n.name),
                    escaped(&n.name),
                    escaped(n.kind.kind())
                );
                for u in upstream(plan, i) {
                    let _ = writeln!(out, "  {} -> {};", quoted(u), quoted(&n.name));
                }
            }
            out.push_str("}\n");
        }
        Format::Mermaid => {
            out.push_str("flowchart LR\n");
            // Mermaid ids must be plain; names with `@`, `=` and `,` go in the labels.
            for (i, n) in plan.nodes.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  n{i}[\"{}<br/><i>{}</i>\"]",
                    n.name.replace('"', "#quot;"),
                    n.kind.kind()
                );
            }
            for i in 0..plan.nodes.len() {
                for u in upstream(plan, i) {
                    let j = plan.nodes.iter().position(|m| m.name == u).unwrap_or(i);
                    let _ = writeln!(out, "  n{j} --> n{i}");
                }
            }
        }
    }
    out
}
