//! `retrieve`'s work: the facets of every task (cause analysis by the LLM, the draft's API calls
//! from the sandboxed parser, embeddings from the encoder) and the retrieval over the knowledge
//! base of the task's language (C and C++ share one).
//! Linked into `secvec-worker` alone (see `worker/src/lib.rs`).

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context};
use secvec_artifacts::kb::{self, Example, Retrieval, RetrievedCwe, RetrievedExample, Scores, Summary};
use secvec_artifacts::language::Language;
use secvec_artifacts::prompts::{self, Prompt, Scenario};
use secvec_artifacts::results::Results;
use secvec_artifacts::samples;
use secvec_cache::{Digest, Memo};
use secvec_llm::wire::SamplingFields;
use secvec_model::device::parse_device;
use secvec_model::encoder::Encoder;
use secvec_retrieval::dense::cosine;
use secvec_retrieval::hierarchy::{Best, Config, CweEntry, ExampleEntry, FacetKind, Knowledge, Query, Scored};
use secvec_score::postprocess;
use secvec_stage::StageContext;
use secvec_stages::input_file::input_file;
use secvec_stages::kb_summarize::Code;
use secvec_stages::llm;
use secvec_stages::retrieve::{RetrieveParams, Strategy};
use serde_json::json;

/// A task: its prompt, the scenario behind it, its language and that language's family.
struct Task<'a> {
    prompt: &'a Prompt,
    scenario: &'a Scenario,
    language: Language,
    family: Language,
}

/// C and C++ tasks search one knowledge base, as the paper's "C/C++" does.
fn family(language: Language) -> Language {
    match language {
        Language::Cpp => Language::C,
        other => other,
    }
}

/// The encoder, with every text's embedding memoised: stages that embed the same knowledge
/// base (each retrieval variant, a rerun with other thresholds) encode it once.
struct Embedder<'a> {
    encoder: Encoder,
    ctx: &'a StageContext,
    /// What the embeddings depend on besides the text.
    identity: serde_json::Value,
    batch: usize,
}

impl Embedder<'_> {
    fn embed(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        let keys: Vec<Digest> = texts
            .iter()
            .map(|t| Memo::key(&json!({"embedding": self.identity, "text": t})))
            .collect();
        let mut rows: Vec<Option<Vec<f32>>> = keys
            .iter()
            .map(|k| {
                let bytes = self.ctx.memo().get(k)?;
                let floats: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (floats.len() == self.encoder.dimension()).then_some(floats)
            })
            .collect();
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| rows[i].is_none()).collect();
        let asked: Vec<&String> = missing.iter().map(|&i| &texts[i]).collect();
        let fresh = Vec::<Vec<f32>>::try_from(&self.encoder.embed(&asked, self.batch)?)?;
        for (i, row) in missing.into_iter().zip(fresh) {
            let bytes: Vec<u8> = row.iter().flat_map(|x| x.to_le_bytes()).collect();
            // A memo that cannot be written costs a rerun, not this run.
            let _ = self.ctx.memo().put(&keys[i], &bytes);
            rows[i] = Some(row);
        }
        Ok(rows.into_iter().map(|r| r.expect("every text embedded")).collect())
    }
}

/// One language family's knowledge base: its CWE clusters and examples, as candidates.
struct Family<'a> {
    /// (language, CWE) of each cluster, its summary if any.
    cwes: Vec<((Language, String), Option<&'a Summary>)>,
    examples: Vec<&'a Example>,
    knowledge: Knowledge,
}

pub fn run(p: &RetrieveParams, ctx: &StageContext) -> anyhow::Result<()> {
    let prompts = prompts::read(&input_file(&ctx.required("tasks")?.path, prompts::FILE)?)?;
    let tasks: Vec<Task> = prompts
        .iter()
        .map(|prompt| {
            let scenario = prompt.scenario.as_ref().with_context(|| {
                format!("task {:?} is not a scenario prompt; `retrieve` needs each task's language and description (bind `tasks` to a `scenarios` stage)", prompt.id)
            })?;
            let language = Language::from_file_name(&format!("x.{}", scenario.language))
                .with_context(|| format!("task {:?}: unknown language {:?}", prompt.id, scenario.language))?;
            Ok(Task {
                prompt,
                scenario,
                language,
                family: family(language),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let examples = kb::read(&ctx.required("examples")?.path)?;
    let summaries = ctx
        .input("summaries")
        .map(|s| kb::read_summaries(&s.path))
        .transpose()?;
    let encoder_input = ctx.required("encoder")?;
    let encoder = Embedder {
        encoder: Encoder::load(&encoder_input.path, parse_device(&p.device)?)?,
        ctx,
        identity: json!({"encoder": encoder_input.digest.hex(), "device": p.device, "torch": env!("SECVEC_TORCH_VERSION")}),
        batch: p.batch_size,
    };

    let (retrieved, best) = match p.strategy {
        Strategy::Seccoder => {
            let r = seccoder(ctx, &tasks, &examples, &encoder)?;
            let best = r.iter().map(|_| Best::default()).collect();
            (r, best)
        }
        Strategy::Rescue => rescue(p, ctx, &tasks, &examples, summaries.as_deref(), &encoder)?,
    };

    let rows: Vec<_> = tasks
        .iter()
        .zip(&retrieved)
        .enumerate()
        .map(|(i, (t, r))| {
            let hit = r.example.as_ref().is_some_and(|e| e.cwe == t.scenario.cwe);
            json!({
                "id": t.prompt.id,
                "set": t.scenario.set,
                "cwe": t.scenario.cwe,
                "retrieved": u8::from(r.example.is_some()),
                "retrieved_cwe": r.example.as_ref().map(|e| e.cwe.clone()).unwrap_or_default(),
                "cwe_hit": u8::from(hit),
                "cwes_kept": r.cwes.len(),
                "best_api": best[i].api,
                "best_cause": best[i].cause,
                "best_code": best[i].code,
            })
        })
        .collect();
    kb::write_retrieved(ctx, &retrieved)?;
    Results::from_rows(rows).write(ctx)?;
    Ok(())
}

/// SecCoder: the secure function (whole) most similar to the task's text, per task.
fn seccoder(
    ctx: &StageContext,
    tasks: &[Task],
    examples: &[Example],
    encoder: &Embedder,
) -> anyhow::Result<Vec<Retrieval>> {
    ctx.message(&format!(
        "embedding {} secure functions and {} tasks",
        examples.len(),
        tasks.len()
    ));
    let secure = encoder.embed(&examples.iter().map(|e| e.after.clone()).collect::<Vec<_>>())?;
    let queries: Vec<String> = tasks
        .iter()
        .map(|t| format!("{}\n{}", t.scenario.description, t.scenario.prefix))
        .collect();
    let queries = encoder.embed(&queries)?;
    Ok(tasks
        .iter()
        .zip(&queries)
        .map(|(t, q)| {
            let best = examples
                .iter()
                .zip(&secure)
                .filter(|(e, _)| family(e.language) == t.family)
                .map(|(e, v)| (e, cosine(q, v)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            Retrieval {
                id: t.prompt.id.clone(),
                cause: String::new(),
                apis: Vec::new(),
                cwes: Vec::new(),
                example: best.map(|(e, score)| RetrievedExample {
                    id: e.id.clone(),
                    language: e.language,
                    cwe: e.cwe.clone(),
                    scores: Scores {
                        fused: score,
                        api: None,
                        cause: None,
                        code: Some(score),
                    },
                    guideline: None,
                    secure_sliced: e.secure.clone(),
                    secure_original: e.after.clone(),
                }),
            }
        })
        .collect())
}

fn rescue(
    p: &RetrieveParams,
    ctx: &StageContext,
    tasks: &[Task],
    examples: &[Example],
    summaries: Option<&[Summary]>,
    encoder: &Embedder,
) -> anyhow::Result<(Vec<Retrieval>, Vec<Best>)> {
    let needs_drafts = p.uses(FacetKind::Api) || p.uses(FacetKind::Code);
    if p.uses(FacetKind::Cause) && summaries.is_none() {
        bail!("the cause facet compares with each CWE's cause summary: bind `summaries` to a `kb-summarize` stage, or drop `cause` from `facets`");
    }
    let programs: Vec<String> = match ctx.input("drafts") {
        Some(d) => drafts(&input_file(&d.path, samples::FILE)?, tasks)?,
        None if needs_drafts => bail!(
            "the API and code facets read each task's draft: bind `drafts` to a `generate` stage over the same tasks, or keep only `cause` in `facets`"
        ),
        None => vec![String::new(); tasks.len()],
    };
    let apis: Vec<Vec<String>> = if p.uses(FacetKind::Api) {
        let languages: Vec<(Language, &str)> = tasks
            .iter()
            .zip(&programs)
            .map(|(t, code)| (t.language, code.as_str()))
            .collect();
        secvec_score::parse::api_calls(&languages)?
    } else {
        vec![Vec::new(); tasks.len()]
    };
    let causes = if p.uses(FacetKind::Cause) {
        cause_analyses(p, ctx, tasks)?
    } else {
        vec![String::new(); tasks.len()]
    };

    let task_causes = match p.uses(FacetKind::Cause) {
        true => Some(encoder.embed(&causes)?),
        false => None,
    };
    let task_code = match p.uses(FacetKind::Code) {
        true => Some(encoder.embed(&programs)?),
        false => None,
    };
    let mut families: BTreeMap<Language, Family> = BTreeMap::new();
    for language in tasks.iter().map(|t| t.family) {
        if let std::collections::btree_map::Entry::Vacant(slot) = families.entry(language) {
            slot.insert(build_family(p, ctx, language, examples, summaries, encoder)?);
        }
    }

    let config = Config {
        facets: p.facets.clone(),
        thresholds: p.thresholds,
        k: p.rrf_k,
        top_cwes: (p.top_cwes > 0).then_some(p.top_cwes),
    };
    let mut best = Vec::with_capacity(tasks.len());
    let retrieved = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let f = &families[&t.family];
            let outcome = f.knowledge.retrieve(
                &Query {
                    cause: task_causes.as_ref().map(|c| c[i].as_slice()),
                    code: task_code.as_ref().map(|c| c[i].as_slice()),
                    apis: &apis[i],
                },
                &config,
            );
            best.push(outcome.best.clone());
            Retrieval {
                id: t.prompt.id.clone(),
                cause: causes[i].clone(),
                apis: apis[i].clone(),
                cwes: outcome
                    .cwes
                    .iter()
                    .map(|s| {
                        let ((language, cwe), _) = &f.cwes[s.index];
                        RetrievedCwe {
                            language: *language,
                            cwe: cwe.clone(),
                            scores: scores(s),
                        }
                    })
                    .collect(),
                example: outcome.example.map(|s| {
                    let e = f.examples[s.index];
                    let cwe = f.knowledge.examples()[s.index].cwe;
                    RetrievedExample {
                        id: e.id.clone(),
                        language: e.language,
                        cwe: e.cwe.clone(),
                        scores: scores(&s),
                        guideline: f.cwes[cwe].1.map(|s| s.guideline.clone()),
                        secure_sliced: e.secure.clone(),
                        secure_original: e.after.clone(),
                    }
                }),
            }
        })
        .collect();
    Ok((retrieved, best))
}

fn scores(s: &Scored) -> Scores {
    Scores {
        fused: s.fused,
        api: s.api,
        cause: s.cause,
        code: s.code,
    }
}

/// Each task's draft: the program its first sample makes.
fn drafts(path: &std::path::Path, tasks: &[Task]) -> anyhow::Result<Vec<String>> {
    let mut first: HashMap<String, samples::Sample> = HashMap::new();
    for s in samples::read(path)? {
        match first.get(&s.prompt_id) {
            Some(kept) if kept.sample <= s.sample => {}
            _ => {
                first.insert(s.prompt_id.clone(), s);
            }
        }
    }
    tasks
        .iter()
        .map(|t| {
            let s = first.get(&t.prompt.id).with_context(|| {
                format!(
                    "{} has no sample for task {:?}: `drafts` must be generated from the same tasks",
                    path.display(),
                    t.prompt.id
                )
            })?;
            Ok(match &s.program {
                Some(program) => program.clone(),
                None => postprocess::program(&t.scenario.language, &t.scenario.prefix, &s.text),
            })
        })
        .collect()
}

/// The LLM's vulnerability-cause analysis of each task.
fn cause_analyses(p: &RetrieveParams, ctx: &StageContext, tasks: &[Task]) -> anyhow::Result<Vec<String>> {
    let Some(prompt) = ctx.input("prompt") else {
        bail!("the cause facet asks the LLM with a prompt file: bind `prompt` (e.g. {{path: prompts/rescue/analysis.txt}}), or drop `cause` from `facets`");
    };
    let path = &prompt.path;
    let template = std::fs::read_to_string(path).with_context(|| format!("reading the prompt {}", path.display()))?;
    let session = llm::open(&p.backend, ctx)?;
    let prompts: Vec<String> = tasks
        .iter()
        .map(|t| {
            template
                .replace("{language}", t.language.display())
                .replace("{description}", &t.scenario.description)
                .replace("{code}", &t.scenario.prefix)
        })
        .collect();
    let sampling = SamplingFields {
        temperature: Some(p.temperature),
        max_tokens: Some(p.max_tokens),
        seed: Some(p.seed),
        ..SamplingFields::default()
    };
    ctx.message(&format!("cause analysis of {} tasks", prompts.len()));
    session.ask(prompts, &sampling, ctx)
}

/// The knowledge base of one language family, embedded.
fn build_family<'a>(
    p: &RetrieveParams,
    ctx: &StageContext,
    language: Language,
    examples: &'a [Example],
    summaries: Option<&'a [Summary]>,
    encoder: &Embedder,
) -> anyhow::Result<Family<'a>> {
    let members: Vec<&Example> = examples.iter().filter(|e| family(e.language) == language).collect();
    let mut clusters: BTreeMap<(Language, String), Option<&Summary>> = BTreeMap::new();
    for e in &members {
        clusters.insert((e.language, e.cwe.clone()), None);
    }
    for s in summaries
        .unwrap_or_default()
        .iter()
        .filter(|s| family(s.language) == language)
    {
        clusters.insert((s.language, s.cwe.clone()), Some(s));
    }
    let cwes: Vec<((Language, String), Option<&Summary>)> = clusters.into_iter().collect();
    let position: BTreeMap<&(Language, String), usize> = cwes.iter().enumerate().map(|(i, (k, _))| (k, i)).collect();
    let example_apis = |e: &Example| match p.code {
        Code::Sliced => e.apis_sliced.clone(),
        Code::Original => e.apis_original.clone(),
    };
    let code_of = |e: &Example| match p.code {
        Code::Sliced => e.secure.clone(),
        Code::Original => e.after.clone(),
    };
    ctx.message(&format!(
        "{}: {} CWEs, {} examples",
        language.display(),
        cwes.len(),
        members.len()
    ));
    let cause_rows = match p.uses(FacetKind::Cause) {
        true => {
            let texts: Vec<String> = cwes
                .iter()
                .map(|(_, s)| s.map(|s| s.cause.clone()).unwrap_or_default())
                .collect();
            Some(encoder.embed(&texts)?)
        }
        false => None,
    };
    let code_rows = match p.uses(FacetKind::Code) {
        true => encoder.embed(&members.iter().map(|e| code_of(e)).collect::<Vec<_>>())?,
        false => vec![Vec::new(); members.len()],
    };
    let mut cwe_apis: Vec<Vec<String>> = vec![Vec::new(); cwes.len()];
    let entries: Vec<ExampleEntry> = members
        .iter()
        .zip(code_rows)
        .map(|(e, code)| {
            let cwe = position[&(e.language, e.cwe.clone())];
            let apis = example_apis(e);
            for a in &apis {
                if !cwe_apis[cwe].contains(a) {
                    cwe_apis[cwe].push(a.clone());
                }
            }
            ExampleEntry { cwe, code, apis }
        })
        .collect();
    let cwe_entries: Vec<CweEntry> = cwes
        .iter()
        .enumerate()
        .zip(cwe_apis)
        .map(|((i, (_, summary)), apis)| CweEntry {
            cause: summary.and(cause_rows.as_ref()).map(|rows| rows[i].clone()),
            apis,
        })
        .collect();
    Ok(Family {
        cwes,
        examples: members,
        knowledge: Knowledge::new(cwe_entries, entries),
    })
}
