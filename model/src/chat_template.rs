//! Chat templates as transformers renders them (`apply_chat_template`): the Jinja template in
//! `tokenizer_config.json`, with trim_blocks and lstrip_blocks on, loop controls,
//! `raise_exception`, Python's string methods, and the tokenizer's `bos_token`/`eos_token`.

use std::path::{Path, PathBuf};

use minijinja::value::Value as MjValue;
use minijinja::{Environment, Error as JinjaError, ErrorKind, State};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {what}")]
    Format { path: PathBuf, what: String },
    #[error("{path}: no chat template (tokenizer_config.json has no `chat_template`); use plain completions")]
    Missing { path: PathBuf },
    #[error("{path}: the chat template failed: {what}")]
    Render { path: PathBuf, what: String },
    #[error(
        "{path}: the chat template ran out of its budget of {fuel} fuel (instructions, and one per 64 \
         bytes it builds): it loops or builds text far beyond what a prompt needs"
    )]
    OutOfFuel { path: PathBuf, fuel: u64 },
}

/// The fuel a template gets for its own work: minijinja charges one per instruction and one per
/// 64 bytes of strings, lists and output a render creates, so fuel bounds both the time and the
/// memory of a render (a template from a model's files is untrusted; `{% set s = s ~ s %}` 40
/// times is 40 instructions but a terabyte). A million runs out in under a tenth of a second,
/// or at 64 MB; a real template spends little beyond copying its input.
const BASE_FUEL: u64 = 1_000_000;

/// A render's fuel: [`BASE_FUEL`] plus one per byte of its input (64 bytes of building per input
/// byte), so a long conversation renders however often the template copies it.
fn fuel_for(input_bytes: usize) -> u64 {
    BASE_FUEL.saturating_add(input_bytes as u64)
}

pub struct ChatTemplate {
    path: PathBuf,
    env: Environment<'static>,
    bos: String,
    eos: String,
}

/// A special token as tokenizer_config.json writes it: a string or `{"content": ...}`.
fn token(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

/// Python's string methods (pycompat), with `str.format` paying for the widths it pads to before
/// it pads: minijinja charges a method's result once it exists, and `'{:>9999999999}'.format(1)`
/// would first allocate 10 GB. Every number in the format string counts as a width, which
/// over-charges by a few bytes per literal digit.
fn python_methods(state: &mut State, value: &MjValue, method: &str, args: &[MjValue]) -> Result<MjValue, JinjaError> {
    if let (Some(format), "format") = (value.as_str(), method) {
        let widths = format
            .split(|c: char| !c.is_ascii_digit())
            .filter(|digits| !digits.is_empty())
            .map(|digits| digits.parse::<u64>().unwrap_or(u64::MAX))
            .fold(0u64, u64::saturating_add);
        state.consume_fuel(widths / 64)?;
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

impl ChatTemplate {
    /// The model's default chat template, from `dir/tokenizer_config.json` (a string, or a list
    /// of named templates of which `default` is used).
    pub fn load(dir: &Path) -> Result<ChatTemplate, ChatTemplateError> {
        let path = dir.join("tokenizer_config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ChatTemplateError::Io {
            path: path.clone(),
            source,
        })?;
        let config: Value = serde_json::from_str(&text).map_err(|e| ChatTemplateError::Format {
            path: path.clone(),
            what: e.to_string(),
        })?;
        let source = match config.get("chat_template") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .ok_or_else(|| ChatTemplateError::Missing { path: path.clone() })?
                .to_string(),
            _ => {
                // transformers 5 may keep it beside the config.
                let jinja = dir.join("chat_template.jinja");
                std::fs::read_to_string(&jinja).map_err(|_| ChatTemplateError::Missing { path: path.clone() })?
            }
        };
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.set_unknown_method_callback(python_methods);
        env.add_function("raise_exception", |message: String| -> Result<String, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned("chat", source)
            .map_err(|e| ChatTemplateError::Format {
                path: path.clone(),
                what: format!("the chat template does not parse: {e}"),
            })?;
        Ok(ChatTemplate {
            bos: token(config.get("bos_token")),
            eos: token(config.get("eos_token")),
            path,
            env,
        })
    }

    /// The prompt for `messages` (a list of `{role, content}`), ending with the assistant's turn
    /// opened when `add_generation_prompt`.
    pub fn render(&self, messages: &Value, add_generation_prompt: bool) -> Result<String, ChatTemplateError> {
        let fuel = fuel_for(messages.to_string().len() + self.bos.len() + self.eos.len());
        // Fuel is the environment's; a clone shares its compiled template.
        let mut env = self.env.clone();
        env.set_fuel(Some(fuel));
        let template = env.get_template("chat").expect("added at load");
        template
            .render(minijinja::context! {
                messages => minijinja::value::Value::from(minijinja::value::Serde(messages)),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos,
                eos_token => &self.eos,
            })
            .map_err(|e| match e.kind() {
                ErrorKind::OutOfFuel => ChatTemplateError::OutOfFuel {
                    path: self.path.clone(),
                    fuel,
                },
                _ => ChatTemplateError::Render {
                    path: self.path.clone(),
                    what: e.to_string(),
                },
            })
    }
}
