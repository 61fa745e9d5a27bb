//! `report`: renders the paper's tables from upstream `results.json` rows into Markdown, CSV and
//! JSON, optionally beside reference values typed from a paper.

mod fields;
mod figure;
mod html;
mod plot;
mod rows;
mod table;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use secvec_artifacts::results::{self, Results};
use secvec_artifacts::scores;
use secvec_stage::{InputSlot, ParamError, Stage, StageContext, Upstreams, FILES};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub use figure::{figure, Figure, FigureKind, FigureSpec};
pub use plot::{png, svg};
pub use rows::From;
pub use table::{render, Rendered, TableSpec};

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    pub title: String,
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    /// Line plots, grouped bars and scatter plots, each written as `figure-N.svg` and `.png`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub figures: Vec<FigureSpec>,
    /// Fields added to every measured row that lacks them, e.g. `model: SmolLM2-135M`, so that
    /// the run's rows sit beside a reference's rows for other models.
    #[serde(default)]
    pub labels: BTreeMap<String, Value>,
    /// How many failing programs per scenario the HTML report shows in full (most frequent
    /// first); 0 lists only the reasons.
    #[serde(default = "default_failure_examples")]
    pub failure_examples: usize,
}

fn default_failure_examples() -> usize {
    3
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("table `{table}` names reference `{file}`, but the `references` input has no such file")]
    MissingReference { table: String, file: String },
    #[error("reference {file}: {what}")]
    Reference { file: String, what: String },
    #[error("table `{table}`: {what}")]
    Spec { table: String, what: String },
    #[error("figure `{figure}`: {what}")]
    Figure { figure: String, what: String },
}

pub struct Report;

impl Stage for Report {
    type Params = ReportParams;
    const KIND: &'static str = "report";
    const VERSION: u32 = 4;
    const DESCRIPTION: &'static str =
        "Tables and figures from upstream results: Markdown, CSV, JSON, SVG and PNG, and one \
         self-contained HTML page with each scenario's failures; reference values side by side.";
    const READS_UPSTREAM_NAMES: bool = true;

    fn inputs() -> Vec<InputSlot> {
        vec![
            InputSlot {
                name: "results",
                accepts: &[results::TAG],
                many: true,
                optional: false,
                doc: "stages whose output holds results.json rows; matrix values and the stage's name (`stage`) join each row as columns",
            },
            InputSlot {
                name: "references",
                accepts: &[FILES],
                many: true,
                optional: true,
                doc: "CSV files (or folders of them) with reference values, e.g. a paper's table",
            },
        ]
    }

    fn output_tags() -> Vec<&'static str> {
        vec!["report"]
    }

    fn check(params: &ReportParams, upstream: &Upstreams) -> Result<(), ParamError> {
        fields::check(params, upstream)
    }

    fn run(&self, params: &ReportParams, ctx: &StageContext) -> anyhow::Result<()> {
        let (mut rows, mut sets) = (Vec::new(), Vec::new());
        let (mut sources, mut verdicts) = (Vec::new(), Vec::new());
        for input in ctx.inputs("results") {
            let results = Results::read(&input.path)?;
            let stage = input.stage.clone().unwrap_or_default();
            let label = |row: Map<String, Value>| {
                let mut row = with_labels(row, &input.labels);
                for (k, v) in &params.labels {
                    row.entry(k.clone()).or_insert_with(|| v.clone());
                }
                row.entry("stage").or_insert_with(|| json!(stage));
                row
            };
            rows.extend(results.rows.into_iter().map(label));
            sets.extend(results.sets.into_iter().map(label));
            let named = if input.labels.is_empty() {
                stage.clone()
            } else {
                let labels: Vec<String> = input.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{stage}@{}", labels.join(","))
            };
            if input.path.join(scores::FILE).is_file() {
                verdicts.push(html::Verdicts {
                    stage: named,
                    judged: scores::read(&input.path)?,
                });
            }
            sources.push(html::Source {
                stage,
                labels: input.labels.clone(),
                digest: input.digest.to_string(),
            });
        }
        let pool = |from: From| match from {
            From::Rows => &rows,
            From::Sets => &sets,
        };
        let references = reference_files(ctx)?;
        let mut markdown = format!("# {}\n", params.title);
        let oracles = oracle_note(&rows);
        if let Some(note) = &oracles {
            markdown.push_str(&format!("\n{note}\n"));
        }
        let (mut tables, mut rendered_tables) = (Vec::new(), Vec::new());
        for (i, spec) in params.tables.iter().enumerate() {
            let reference = match &spec.reference {
                None => None,
                Some(file) => Some(references.get(file).ok_or_else(|| ReportError::MissingReference {
                    table: spec.title.clone(),
                    file: file.clone(),
                })?),
            };
            let rendered = render(
                spec,
                pool(spec.from),
                reference.map(|(name, text)| (name.as_str(), text.as_str())),
            )?;
            markdown.push_str(&format!("\n## {}\n\n{}", spec.title, rendered.markdown()));
            let slug = format!("table-{}.csv", i + 1);
            ctx.write(&slug, rendered.csv()?)?;
            tables
                .push(json!({"title": spec.title, "csv": slug, "header": rendered.header, "rows": rendered.objects()}));
            rendered_tables.push(rendered);
        }
        let (mut figures, mut svgs) = (Vec::new(), Vec::new());
        for (i, spec) in params.figures.iter().enumerate() {
            let data = figure(spec, pool(spec.from))?;
            let stem = format!("figure-{}", i + 1);
            let drawn = svg(&data)?;
            ctx.write(&format!("{stem}.svg"), &drawn)?;
            ctx.write(&format!("{stem}.png"), png(&data)?)?;
            markdown.push_str(&format!("\n## {}\n\n![{}]({stem}.svg)\n", spec.title, spec.title));
            figures.push(
                json!({"title": spec.title, "svg": format!("{stem}.svg"), "png": format!("{stem}.png"), "data": data}),
            );
            svgs.push(drawn);
        }
        for v in &mut verdicts {
            v.judged = examples(std::mem::take(&mut v.judged), params.failure_examples);
        }
        let page = html::page(&html::Page {
            title: &params.title,
            oracles: oracles.as_deref(),
            tables: params
                .tables
                .iter()
                .zip(&rendered_tables)
                .map(|(s, r)| (s.title.as_str(), r))
                .collect(),
            figures: params
                .figures
                .iter()
                .zip(&svgs)
                .map(|(s, svg)| (s.title.as_str(), svg.as_str()))
                .collect(),
            verdicts: &verdicts,
            sources: &sources,
        });
        ctx.write("report.md", markdown)?;
        ctx.write("report.html", page)?;
        ctx.write(
            "report.json",
            serde_json::to_vec_pretty(&json!({"title": params.title, "tables": tables, "figures": figures}))?,
        )?;
        Ok(())
    }
}

/// Per scenario, the `keep` most frequent failing programs keep their text (and test output);
/// every other program keeps only its counts and reasons, so a sweep's page stays small.
fn examples(judged: Vec<scores::JudgedProgram>, keep: usize) -> Vec<scores::JudgedProgram> {
    let mut order: Vec<usize> = (0..judged.len()).collect();
    order.sort_by(|&a, &b| {
        (&judged[a].scenario, std::cmp::Reverse(judged[a].count))
            .cmp(&(&judged[b].scenario, std::cmp::Reverse(judged[b].count)))
    });
    let mut shown: BTreeMap<String, usize> = BTreeMap::new();
    let mut slots: Vec<Option<scores::JudgedProgram>> = judged.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(slots.len());
    for i in order {
        let Some(mut j) = slots[i].take() else { continue };
        let failing = !(j.functional && j.secure != Some(false));
        let n = shown.entry(j.scenario.clone()).or_default();
        if !failing || *n >= keep {
            j.program.clear();
            j.stderr_tail.clear();
        }
        *n += usize::from(failing);
        out.push(j);
    }
    out
}

/// Which security oracles judged the scores behind the report, said once under its title: the
/// open checks and CodeQL flag different programs, so figures from one are not the other's.
fn oracle_note(rows: &[Map<String, Value>]) -> Option<String> {
    let mut used: Vec<&str> = rows.iter().filter_map(|r| r.get("oracle")?.as_str()).collect();
    used.sort_unstable();
    used.dedup();
    let named: Vec<String> = used
        .iter()
        .map(|o| match *o {
            "open" => "the open oracles (semgrep, bandit, cppcheck, gcc -fanalyzer and the scenarios' pattern checks)"
                .to_string(),
            "codeql" => "CodeQL, with each scenario's query".to_string(),
            other => format!("`{other}`"),
        })
        .collect();
    (!named.is_empty()).then(|| {
        format!(
            "Security verdicts: {}. The papers judge with CodeQL; the oracles flag different programs, so security figures from one are not comparable with the other's.",
            named.join("; ")
        )
    })
}

/// A row with its input's labels as fields (the row's own fields win). Matrix labels arrive as
/// text; numbers become numbers again so they sort and format as such.
pub(crate) fn with_labels(mut row: Map<String, Value>, labels: &BTreeMap<String, String>) -> Map<String, Value> {
    for (k, v) in labels {
        row.entry(k.clone()).or_insert_with(|| label_value(v));
    }
    row
}

fn label_value(v: &str) -> Value {
    v.parse::<f64>()
        .ok()
        .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
        .unwrap_or_else(|| json!(v))
}

/// Reference CSVs by file name, from files and folders bound to `references`.
fn reference_files(ctx: &StageContext) -> Result<BTreeMap<String, (String, String)>, ReportError> {
    let mut out = BTreeMap::new();
    for input in ctx.inputs("references") {
        let files: Vec<std::path::PathBuf> = if input.path.is_dir() {
            walkdir::WalkDir::new(&input.path)
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
                .collect()
        } else {
            vec![input.path.clone()]
        };
        for f in files {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&f).map_err(|e| ReportError::Reference {
                file: f.display().to_string(),
                what: e.to_string(),
            })?;
            out.insert(name.clone(), (name, text));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oracles_behind_the_scores_are_named_once() {
        let rows = rows::objects(json!([
            {"scenario": "a", "oracle": "open"},
            {"scenario": "b", "oracle": "open"},
            {"scenario": "c", "oracle": null},
            {"scenario": "d", "oracle": "codeql"}
        ]));
        let note = oracle_note(&rows).unwrap();
        assert!(
            note.contains("the open oracles") && note.contains("CodeQL, with each scenario's query"),
            "{note}"
        );
        assert_eq!(note.matches("the open oracles").count(), 1);
        assert_eq!(oracle_note(&rows::objects(json!([{"margin": 0.1}]))), None);
    }
}
