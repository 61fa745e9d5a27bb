//! `report`: renders the paper's tables from upstream `results.json` rows into Markdown, CSV and
//! JSON, optionally beside reference values typed from a paper.

mod table;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use secvec_artifacts::results::{self, Results};
use secvec_engine::{InputSlot, Stage, StageContext, FILES};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use table::{render, From, Rendered, TableSpec};

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    pub title: String,
    pub tables: Vec<TableSpec>,
    /// Fields added to every measured row that lacks them, e.g. `model: SmolLM2-135M`, so that
    /// the run's rows sit beside a reference's rows for other models.
    #[serde(default)]
    pub labels: BTreeMap<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("table `{table}` names reference `{file}`, but the `references` input has no such file")]
    MissingReference { table: String, file: String },
    #[error("reference {file}: {what}")]
    Reference { file: String, what: String },
    #[error("table `{table}`: {what}")]
    Spec { table: String, what: String },
}

pub struct Report;

impl Stage for Report {
    type Params = ReportParams;
    const KIND: &'static str = "report";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str =
        "Tables from upstream results in Markdown, CSV and JSON, with reference values side by side.";

    fn inputs() -> Vec<InputSlot> {
        vec![
            InputSlot {
                name: "results",
                accepts: &[results::TAG],
                many: true,
                optional: false,
                doc: "stages whose output holds results.json rows; matrix values join each row as columns",
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

    fn run(&self, params: &ReportParams, ctx: &StageContext) -> anyhow::Result<()> {
        let (mut rows, mut sets) = (Vec::new(), Vec::new());
        for input in ctx.inputs("results") {
            let results = Results::read(&input.path)?;
            let label = |mut row: serde_json::Map<String, Value>| {
                for (k, v) in &input.labels {
                    row.entry(k.clone()).or_insert_with(|| label_value(v));
                }
                for (k, v) in &params.labels {
                    row.entry(k.clone()).or_insert_with(|| v.clone());
                }
                row
            };
            rows.extend(results.rows.into_iter().map(label));
            sets.extend(results.sets.into_iter().map(label));
        }
        let references = reference_files(ctx)?;
        let mut markdown = format!("# {}\n", params.title);
        let mut tables = Vec::new();
        for (i, spec) in params.tables.iter().enumerate() {
            let reference = match &spec.reference {
                None => None,
                Some(file) => Some(references.get(file).ok_or_else(|| ReportError::MissingReference {
                    table: spec.title.clone(),
                    file: file.clone(),
                })?),
            };
            let pool = match spec.from {
                From::Rows => &rows,
                From::Sets => &sets,
            };
            let rendered = render(spec, pool, reference.map(|(name, text)| (name.as_str(), text.as_str())))?;
            markdown.push_str(&format!("\n## {}\n\n{}", spec.title, rendered.markdown()));
            let slug = format!("table-{}.csv", i + 1);
            ctx.write(&slug, rendered.csv()?)?;
            tables.push(json!({"title": spec.title, "csv": slug, "header": rendered.header, "rows": rendered.cells}));
        }
        ctx.write("report.md", markdown)?;
        ctx.write(
            "report.json",
            serde_json::to_vec_pretty(&json!({"title": params.title, "tables": tables}))?,
        )?;
        Ok(())
    }
}

/// Matrix labels arrive as text; numbers become numbers again so they sort and format as such.
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
