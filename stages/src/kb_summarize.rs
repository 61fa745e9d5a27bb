//! `kb-summarize`: Rescue's cluster-then-summarize (§2.1.1). The knowledge base's fixes are
//! clustered by (language, CWE); each cluster is summarised `group_size` fixes at a time, then
//! those summaries `group_size` at a time, until one is left, once for security guidelines and
//! once for vulnerability causes. The prompts are files (`manifests/prompts/rescue/`); every
//! response is memoised by request, so editing one prompt re-asks only what it changed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use schemars::JsonSchema;
use secvec_artifacts::kb::{self, Example, Summary};
use secvec_artifacts::language::Language;
use secvec_artifacts::results::{self, Results};
use secvec_llm::wire::SamplingFields;
use secvec_stage::{InputSlot, ResultFields, Stage, StageContext, FILES};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::llm::{self, Backend};

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KbSummarizeParams {
    #[serde(default)]
    pub backend: Backend,
    /// Summarise only the clusters of these languages (empty: all).
    #[serde(default)]
    pub languages: Vec<Language>,
    /// Items (fixes, then summaries) per request (Rescue: 10).
    #[serde(default = "group_size")]
    pub group_size: usize,
    /// What the first-level prompts show of each fix: `original` (whole functions, as the
    /// paper) or `sliced`.
    #[serde(default)]
    pub code: Code,
    /// Show at most this many lines of each version of a fix (the rest is cut with a note): a
    /// budget for a summariser with a small context window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lines: Option<usize>,
    /// Summarise at most this many fixes of each cluster (the first, in file order): a budget
    /// for slow summarisers. Retrieval still searches every fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fixes: Option<usize>,
    #[serde(default = "max_tokens")]
    pub max_tokens: usize,
    #[serde(default)]
    pub temperature: f64,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Code {
    #[default]
    Original,
    Sliced,
}

fn group_size() -> usize {
    10
}
fn max_tokens() -> usize {
    512
}

impl Default for KbSummarizeParams {
    fn default() -> Self {
        KbSummarizeParams {
            backend: Backend::default(),
            languages: Vec::new(),
            group_size: group_size(),
            code: Code::default(),
            max_fixes: None,
            max_lines: None,
            max_tokens: max_tokens(),
            temperature: 0.0,
            seed: 0,
        }
    }
}

/// The four prompt files.
struct Prompts {
    first: [String; 2],
    merge: [String; 2],
}

/// The two summaries of a cluster, in this order.
const FACETS: [&str; 2] = ["guideline", "cause"];

impl Prompts {
    fn read(dir: &Path) -> anyhow::Result<Prompts> {
        let read = |name: String| {
            let path = dir.join(&name);
            std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading the prompt {}: the `prompts` folder needs guideline.txt, cause.txt, merge-guideline.txt and merge-cause.txt",
                    path.display()
                )
            })
        };
        Ok(Prompts {
            first: [read(format!("{}.txt", FACETS[0]))?, read(format!("{}.txt", FACETS[1]))?],
            merge: [
                read(format!("merge-{}.txt", FACETS[0]))?,
                read(format!("merge-{}.txt", FACETS[1]))?,
            ],
        })
    }
}

fn fill(template: &str, language: Language, cwe: &str, count: usize, key: &str, items: &str) -> String {
    template
        .replace("{language}", language.display())
        .replace("{cwe}", &cwe.to_uppercase())
        .replace("{count}", &count.to_string())
        .replace(&format!("{{{key}}}"), items)
}

fn show_fix(i: usize, e: &Example, code: Code, max_lines: Option<usize>) -> String {
    let (vulnerable, secure) = match code {
        Code::Original => (&e.before, &e.after),
        Code::Sliced => (&e.vulnerable, &e.secure),
    };
    let lang = e.language.name();
    format!(
        "Fix {}:\nVulnerable:\n```{lang}\n{}\n```\nFixed:\n```{lang}\n{}\n```",
        i + 1,
        cut(vulnerable.trim_end(), max_lines),
        cut(secure.trim_end(), max_lines)
    )
}

/// The first `max_lines` lines of `code`, and a line saying how many were left out.
fn cut(code: &str, max_lines: Option<usize>) -> String {
    let lines: Vec<&str> = code.lines().collect();
    match max_lines {
        Some(max) if lines.len() > max => {
            format!("{}\n... ({} more lines)", lines[..max].join("\n"), lines.len() - max)
        }
        _ => code.to_string(),
    }
}

pub struct KbSummarize;

impl Stage for KbSummarize {
    type Params = KbSummarizeParams;
    const KIND: &'static str = "kb-summarize";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str =
        "Rescue's cluster-then-summarize: per (language, CWE), security guidelines and vulnerability causes.";

    fn inputs() -> Vec<InputSlot> {
        vec![
            InputSlot {
                name: "examples",
                accepts: &[kb::TAG],
                many: false,
                optional: false,
                doc: "the knowledge base's fixes: a `kb-slice` stage",
            },
            InputSlot {
                name: "prompts",
                accepts: &[FILES],
                many: false,
                optional: false,
                doc: "a folder with guideline.txt, cause.txt, merge-guideline.txt, merge-cause.txt",
            },
            InputSlot {
                name: "model",
                accepts: &[secvec_artifacts::model::TAG, FILES],
                many: false,
                optional: true,
                doc: "the summariser for `backend: local`: a model stage or an HF model directory",
            },
            InputSlot {
                name: "adapter",
                accepts: &[secvec_artifacts::adapter::TAG, FILES],
                many: false,
                optional: true,
                doc: "a LoRA adapter for the local model",
            },
        ]
    }

    fn output_tags() -> Vec<&'static str> {
        vec![kb::SUMMARIES_TAG, results::TAG]
    }

    fn result_fields(_: &Self::Params) -> Option<ResultFields> {
        Some(ResultFields::rows(["language", "cwe", "fixes_summarised", "levels"]))
    }

    fn environment(params: &mut Self::Params) -> anyhow::Result<serde_json::Value> {
        params.backend.check()?;
        Ok(serde_json::Value::Null)
    }

    fn run(&self, p: &KbSummarizeParams, ctx: &StageContext) -> anyhow::Result<()> {
        if p.group_size < 2 {
            anyhow::bail!(
                "`group_size` is {}; summarising needs at least 2 items per request",
                p.group_size
            );
        }
        let examples = kb::read(&ctx.required("examples")?.path)?;
        let prompts = Prompts::read(&ctx.required("prompts")?.path)?;
        let mut clusters: BTreeMap<(Language, String), Vec<&Example>> = BTreeMap::new();
        for e in examples
            .iter()
            .filter(|e| p.languages.is_empty() || p.languages.contains(&e.language))
        {
            clusters.entry((e.language, e.cwe.clone())).or_default().push(e);
        }
        if let Some(max) = p.max_fixes {
            clusters.values_mut().for_each(|members| members.truncate(max.max(1)));
        }
        let keys: Vec<(Language, String)> = clusters.keys().cloned().collect();
        // Per cluster and facet, the texts of the current level.
        let mut texts: Vec<[Vec<String>; 2]> = Vec::new();
        let mut levels = vec![1usize; keys.len()];
        let session = llm::open(&p.backend, ctx)?;
        let sampling = SamplingFields {
            temperature: Some(p.temperature),
            max_tokens: Some(p.max_tokens),
            seed: Some(p.seed),
            ..SamplingFields::default()
        };
        let ask = |prompts: Vec<String>| session.ask(prompts, &sampling, ctx);
        // Level 1: groups of fixes.
        let mut requests = Vec::new();
        for ((language, cwe), members) in &clusters {
            for (f, template) in prompts.first.iter().enumerate() {
                for group in members.chunks(p.group_size) {
                    let shown: Vec<String> = group
                        .iter()
                        .enumerate()
                        .map(|(i, e)| show_fix(i, e, p.code, p.max_lines))
                        .collect();
                    requests.push((
                        f,
                        fill(template, *language, cwe, group.len(), "examples", &shown.join("\n\n")),
                    ));
                }
            }
        }
        ctx.message(&format!(
            "{} clusters: {} first-level requests",
            keys.len(),
            requests.len()
        ));
        let mut answers = ask(requests.iter().map(|(_, r)| r.clone()).collect())?.into_iter();
        for members in clusters.values() {
            let groups = members.len().div_ceil(p.group_size);
            texts.push([
                answers.by_ref().take(groups).collect(),
                answers.by_ref().take(groups).collect(),
            ]);
        }
        // Then summaries of summaries, every cluster's next level in one batch.
        loop {
            ctx.check_cancelled()?;
            let mut requests = Vec::new();
            for (c, (language, cwe)) in keys.iter().enumerate() {
                for (f, current) in texts[c].iter().enumerate() {
                    if current.len() > 1 {
                        for group in current.chunks(p.group_size) {
                            let shown: Vec<String> = group
                                .iter()
                                .enumerate()
                                .map(|(i, t)| format!("Summary {}:\n{t}", i + 1))
                                .collect();
                            requests.push((
                                c,
                                f,
                                fill(
                                    &prompts.merge[f],
                                    *language,
                                    cwe,
                                    group.len(),
                                    "summaries",
                                    &shown.join("\n\n"),
                                ),
                            ));
                        }
                    }
                }
            }
            if requests.is_empty() {
                break;
            }
            let mut answers = ask(requests.iter().map(|(_, _, r)| r.clone()).collect())?.into_iter();
            let mut next: Vec<[Vec<String>; 2]> = texts.iter().map(|_| [Vec::new(), Vec::new()]).collect();
            for (c, f, _) in &requests {
                next[*c][*f].push(answers.next().expect("one answer per request"));
            }
            for (c, t) in texts.iter_mut().enumerate() {
                let mut merged = false;
                for f in 0..2 {
                    if !next[c][f].is_empty() {
                        t[f] = std::mem::take(&mut next[c][f]);
                        merged = true;
                    }
                }
                levels[c] += merged as usize;
            }
        }
        let mut summaries = Vec::new();
        let mut rows = Vec::new();
        for (c, ((language, cwe), members)) in clusters.iter().enumerate() {
            let [guideline, cause] = &texts[c];
            summaries.push(Summary {
                language: *language,
                cwe: cwe.clone(),
                guideline: guideline[0].clone(),
                cause: cause[0].clone(),
                examples: members.iter().map(|e| e.id.clone()).collect(),
                levels: levels[c],
            });
            rows.push(json!({"language": language.name(), "cwe": cwe, "fixes_summarised": members.len(), "levels": levels[c]}));
        }
        drop(session);
        kb::write_summaries(ctx, &summaries)?;
        Results::from_rows(rows).write(ctx)?;
        Ok(())
    }
}
