//! `secvec compare`: metrics of several runs side by side.

use super::Globals;
use crate::exit::Exit;
use crate::runs;
use anyhow::bail;
use anyhow::Context;
use anyhow::Result;

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Runs (ids, prefixes, `latest`, `latest~N`); default: the latest.
    pub runs: Vec<String>,
    /// Stages to show (a glob over concrete stage names, e.g. `sweep-scores-lpo*`).
    #[arg(long, default_value = "*")]
    pub stage: String,
    /// A metric: a results field (`pass@1`, the mean over rows) or a set's (`main:sec-pass@1`);
    /// repeatable. Default: every metric the stages shown have in common.
    #[arg(long = "metric")]
    pub metrics: Vec<String>,
    /// One JSON object per row.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CompareArgs, globals: &Globals) -> Result<Exit> {
    let CompareArgs {
        runs: which,
        stage,
        metrics,
        json,
    } = args;
    let records = runs::list(&globals.cache)?;
    let which = if which.is_empty() {
        vec!["latest".to_string()]
    } else {
        which
    };
    let chosen = which
        .iter()
        .map(|w| runs::find(&records, w).map(|i| &records[i]))
        .collect::<Result<Vec<_>>>()?;
    let glob = globset::Glob::new(&stage)
        .with_context(|| format!("--stage {stage}: not a glob"))?
        .compile_matcher();
    let (header, rows) = runs::compare(&chosen, &glob, &metrics);
    if rows.is_empty() {
        bail!("no stage matching `{stage}` has results in the runs named");
    }
    if json {
        for row in &rows {
            let obj: serde_json::Map<String, serde_json::Value> =
                header.iter().cloned().zip(row.iter().cloned()).collect();
            out!("{}", serde_json::to_string(&obj)?);
        }
        return Ok(Exit::Success);
    }
    // A metric and its bounds show as one column, `value [lo, hi]`.
    let shown: Vec<(usize, Option<(usize, usize)>)> = (0..header.len())
        .filter(|&j| {
            !header
                .iter()
                .any(|h| [format!("{h}_lo"), format!("{h}_hi")].contains(&header[j]))
        })
        .map(|j| {
            let at = |end: &str| header.iter().position(|h| *h == format!("{}_{end}", header[j]));
            (j, at("lo").zip(at("hi")))
        })
        .collect();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Number(n) => format!("{:.4}", n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => s.clone(),
        _ => "—".to_string(),
    };
    let header: Vec<String> = shown.iter().map(|(j, _)| header[*j].clone()).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            shown
                .iter()
                .map(|&(j, bounds)| match bounds {
                    Some((lo, hi)) if !r[lo].is_null() && !r[hi].is_null() => {
                        format!("{} [{}, {}]", text(&r[j]), text(&r[lo]), text(&r[hi]))
                    }
                    _ => text(&r[j]),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|j| {
            cells
                .iter()
                .map(|r| r[j].chars().count())
                .chain([header[j].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |r: &[String]| {
        r.iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    out!("{}", line(&header));
    for r in &cells {
        out!("{}", line(r));
    }
    Ok(Exit::Success)
}
