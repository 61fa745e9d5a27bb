//! `rag-prompt`: Rescue's augmented generation prompts (§2.3): each task's prompt rendered with
//! the security guideline and the secure example `retrieve` found for it, from a template file
//! (minijinja). A task with nothing retrieved keeps its prompt, as the paper's thresholds intend:
//! only security-relevant tasks get security context.

use std::collections::HashMap;

use anyhow::Context;
use schemars::JsonSchema;
use secvec_artifacts::kb::{self, Retrieval};
use secvec_artifacts::prompts::{self, Prompt};
use secvec_artifacts::results::{self, Results};
use secvec_stage::{InputSlot, ResultFields, Stage, StageContext, FILES};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::input_file::input_file;
use crate::scenarios::language_name;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExampleCode {
    /// The example's sliced secure code (Rescue).
    #[default]
    Sliced,
    /// The whole secure function ("w/o ps_generation", SecCoder).
    Original,
    /// No example.
    None,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RagPromptParams {
    /// Show the retrieved CWE's security guideline ("w/o guideline": false).
    #[serde(default = "yes")]
    pub guideline: bool,
    /// Which code of the retrieved example to show.
    #[serde(default)]
    pub example: ExampleCode,
}

fn yes() -> bool {
    true
}

pub struct RagPrompt;

/// The template as one minijinja environment: block tags take their line's newline with them,
/// and a misspelt variable is an error rather than empty text.
fn environment(source: String) -> Result<minijinja::Environment<'static>, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template_owned("rag", source)?;
    Ok(env)
}

/// The fuel a template gets for its own work: minijinja charges one per instruction and one per
/// 64 bytes of strings, lists and output a render creates, so fuel bounds the time and memory of
/// a render that loops or doubles a string. A million runs out in under a tenth of a second, or
/// at 64 MB; a prompt template spends little beyond copying its input, and each byte of that
/// input adds one.
const BASE_FUEL: u64 = 1_000_000;

/// Renders `template` for one task; `None` when there is nothing to add.
fn render(
    env: &minijinja::Environment,
    p: &RagPromptParams,
    task: &Prompt,
    found: &Retrieval,
) -> anyhow::Result<Option<String>> {
    let (Some(scenario), Some(example)) = (&task.scenario, &found.example) else {
        return Ok(None);
    };
    let guideline = example.guideline.as_deref().filter(|_| p.guideline);
    let code = match p.example {
        ExampleCode::Sliced => Some(example.secure_sliced.trim_end()),
        ExampleCode::Original => Some(example.secure_original.trim_end()),
        ExampleCode::None => None,
    };
    if guideline.is_none() && code.is_none() {
        return Ok(None);
    }
    let context = json!({
        "language": language_name(&scenario.language),
        "fence": example.language.name(),
        "description": scenario.description,
        "prefix": scenario.prefix,
        "prompt": task.prompt,
        "guideline": guideline,
        "example": code,
        "cwe": example.cwe.to_uppercase(),
    });
    // Fuel is the environment's; a clone shares its compiled template.
    let mut env = env.clone();
    let fuel = BASE_FUEL.saturating_add(context.to_string().len() as u64);
    env.set_fuel(Some(fuel));
    let text = env
        .get_template("rag")?
        .render(minijinja::Value::from(minijinja::value::Serde(context)))
        .map_err(|e| match e.kind() {
            minijinja::ErrorKind::OutOfFuel => anyhow::anyhow!(
                "the template ran out of its budget of {fuel} fuel (instructions, and one per 64 bytes \
                 it builds): it loops or builds text far beyond what a prompt needs"
            ),
            _ => e.into(),
        })?;
    Ok(Some(text))
}

impl Stage for RagPrompt {
    type Params = RagPromptParams;
    const KIND: &'static str = "rag-prompt";
    const VERSION: u32 = 1;
    const DESCRIPTION: &'static str =
        "Rescue's augmented prompts: each task with its retrieved guideline and secure example, from a template.";

    fn inputs() -> Vec<InputSlot> {
        vec![
            InputSlot {
                name: "tasks",
                accepts: &[prompts::TAG],
                many: false,
                optional: false,
                doc: "the tasks `retrieve` ran on",
            },
            InputSlot {
                name: "retrieved",
                accepts: &[kb::RETRIEVED_TAG],
                many: false,
                optional: false,
                doc: "a `retrieve` stage",
            },
            InputSlot {
                name: "template",
                accepts: &[FILES],
                many: false,
                optional: false,
                doc: "a minijinja template with language, description, prefix, prompt, guideline, example, fence, cwe",
            },
        ]
    }

    fn output_tags() -> Vec<&'static str> {
        vec![prompts::TAG, results::TAG]
    }

    fn result_fields(_: &Self::Params) -> Option<ResultFields> {
        Some(ResultFields::rows(["id", "set", "augmented"]))
    }

    fn run(&self, p: &RagPromptParams, ctx: &StageContext) -> anyhow::Result<()> {
        let tasks = prompts::read(&input_file(&ctx.required("tasks")?.path, prompts::FILE)?)?;
        let retrieved = kb::read_retrieved(&ctx.required("retrieved")?.path)?;
        let path = &ctx.required("template")?.path;
        let source =
            std::fs::read_to_string(path).with_context(|| format!("reading the template {}", path.display()))?;
        let env = environment(source).with_context(|| format!("the template {} does not parse", path.display()))?;
        let by_id: HashMap<&str, &Retrieval> = retrieved.iter().map(|r| (r.id.as_str(), r)).collect();
        let mut out = Vec::with_capacity(tasks.len());
        let mut rows = Vec::with_capacity(tasks.len());
        for task in &tasks {
            let found = by_id.get(task.id.as_str()).with_context(|| {
                format!(
                    "`retrieved` has nothing for task {:?}: bind both inputs to the same tasks",
                    task.id
                )
            })?;
            let rendered = render(&env, p, task, found)
                .with_context(|| format!("rendering {} for task {:?}", path.display(), task.id))?;
            rows.push(json!({
                "id": task.id,
                "set": task.scenario.as_ref().map(|s| s.set.clone()),
                "augmented": u8::from(rendered.is_some()),
            }));
            out.push(Prompt {
                prompt: rendered.unwrap_or_else(|| task.prompt.clone()),
                ..task.clone()
            });
        }
        prompts::write(ctx, &out)?;
        Results::from_rows(rows).write(ctx)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secvec_artifacts::kb::{RetrievedExample, Scores};
    use secvec_artifacts::language::Language;
    use secvec_artifacts::prompts::Scenario;

    fn task() -> Prompt {
        Prompt {
            id: "cwe-502/0-py".into(),
            prompt: "plain".into(),
            scenario: Some(Scenario {
                set: "main".into(),
                cwe: "cwe-502".into(),
                language: "py".into(),
                description: "load a config".into(),
                description_from: "info".into(),
                prefix: "import yaml\ndef load(p):\n".into(),
                check_ql: None,
            }),
        }
    }

    fn found(example: bool) -> Retrieval {
        Retrieval {
            id: "cwe-502/0-py".into(),
            cause: String::new(),
            apis: Vec::new(),
            cwes: Vec::new(),
            example: example.then(|| RetrievedExample {
                id: "e".into(),
                language: Language::Python,
                cwe: "cwe-502".into(),
                scores: Scores {
                    fused: 0.1,
                    api: None,
                    cause: None,
                    code: None,
                },
                guideline: Some("- use yaml.safe_load".into()),
                secure_sliced: "yaml.safe_load(f)\n".into(),
                secure_original: "def f(p):\n    return yaml.safe_load(open(p))\n".into(),
            }),
        }
    }

    fn env() -> minijinja::Environment<'static> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/prompts/rescue/generation.txt"
        );
        environment(std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_project_template_shows_what_the_params_ask_and_ends_with_the_prefix() {
        let env = env();
        let both = RagPromptParams {
            guideline: true,
            example: ExampleCode::Sliced,
        };
        let text = render(&env, &both, &task(), &found(true)).unwrap().unwrap();
        assert!(text.contains("- use yaml.safe_load") && text.contains("```python\nyaml.safe_load(f)\n```"));
        assert!(text.ends_with("import yaml\ndef load(p):\n"), "{text}");
        let example_only = RagPromptParams {
            guideline: false,
            example: ExampleCode::Original,
        };
        let text = render(&env, &example_only, &task(), &found(true)).unwrap().unwrap();
        assert!(!text.contains("- use yaml.safe_load"));
        assert!(text.contains("return yaml.safe_load(open(p))"));
    }

    #[test]
    fn a_task_with_nothing_retrieved_or_nothing_to_show_keeps_its_prompt() {
        let env = env();
        let none = RagPromptParams {
            guideline: false,
            example: ExampleCode::None,
        };
        assert_eq!(render(&env, &none, &task(), &found(true)).unwrap(), None);
        let all = RagPromptParams {
            guideline: true,
            example: ExampleCode::Sliced,
        };
        assert_eq!(render(&env, &all, &task(), &found(false)).unwrap(), None);
    }

    #[test]
    fn a_template_that_loops_or_doubles_runs_out_of_its_budget_with_a_clear_error() {
        let all = RagPromptParams {
            guideline: true,
            example: ExampleCode::Sliced,
        };
        let doubling = format!("{{% set s = prompt %}}{}{{{{ s }}}}", "{% set s = s ~ s %}".repeat(40));
        let looping = "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}";
        // The budget is counted in template operations, not time: it ends both long before they
        // would (10¹⁰ iterations; a 2⁴⁰-fold string).
        for source in [doubling.as_str(), looping] {
            let env = environment(source.to_string()).unwrap();
            let err = format!("{:#}", render(&env, &all, &task(), &found(true)).unwrap_err());
            assert!(err.contains("ran out of its budget"), "{source}: {err}");
        }
    }
}
