//! Chat templates render as transformers' `apply_chat_template` renders them (run in the test):
//! SmolLM2-Instruct's template and one that uses what real templates lean on (whitespace
//! control, trim_blocks/lstrip_blocks, slicing, Python string methods, `loop.last`,
//! `raise_exception`).

mod common;

use std::path::Path;
use std::process::Command;

use common::{fixtures, peft_python};
use secvec_model::chat_template::ChatTemplate;
use serde_json::json;

/// What SmolLM2-135M-Instruct's tokenizer_config.json carries.
const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const STRESS: &str = "{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] | trim %}
    {%- set rest = messages[1:] %}
{%- else %}
    {%- set system = 'You are helpful.' %}
    {%- set rest = messages %}
{%- endif %}
<<SYS>>{{ system }}<</SYS>>
{% for message in rest %}
    {% if message['role'] not in ['user', 'assistant'] %}{{ raise_exception('Unknown role: ' + message['role']) }}{% endif %}
    [{{ message['role'] | upper }}] {{ message['content'].strip() }}{% if not loop.last %}{{ eos_token }}{% endif %}

{% endfor %}
{%- if add_generation_prompt %}[ASSISTANT]{% endif %}";

/// A model folder with the fixture tokenizer and `template`.
fn folder(template: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("llama/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let config = json!({
        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": template,
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    dir
}

fn transformers(python: &Path, dir: &Path, messages: &serde_json::Value, add: bool) -> String {
    let script = "import json, sys\n\
        from transformers import AutoTokenizer\n\
        t = AutoTokenizer.from_pretrained(sys.argv[1])\n\
        m = json.loads(sys.argv[2])\n\
        sys.stdout.write(json.dumps(t.apply_chat_template(m, tokenize=False, add_generation_prompt=sys.argv[3] == '1')))\n";
    let out = Command::new(python)
        .args([
            "-c",
            script,
            &dir.display().to_string(),
            &messages.to_string(),
            if add { "1" } else { "0" },
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn templates_render_as_transformers_renders_them() {
    let Some(python) = peft_python() else {
        return;
    };
    let conversations = [
        json!([{"role": "user", "content": "Write a function that reads a file."}]),
        json!([
            {"role": "system", "content": "  You are a security expert.\n"},
            {"role": "user", "content": "Why is yaml.load unsafe?"},
            {"role": "assistant", "content": " It can build arbitrary objects. "},
            {"role": "user", "content": "And pickle?"}
        ]),
    ];
    for template in [SMOLLM2, STRESS] {
        let dir = folder(template);
        let ours = ChatTemplate::load(dir.path()).unwrap();
        for messages in &conversations {
            for add in [true, false] {
                let theirs = transformers(&python, dir.path(), messages, add);
                assert_eq!(ours.render(messages, add).unwrap(), theirs, "{messages}");
            }
        }
    }
}

#[test]
fn a_template_that_raises_is_an_error_naming_the_file() {
    let dir = folder(STRESS);
    let ours = ChatTemplate::load(dir.path()).unwrap();
    let err = ours
        .render(&json!([{"role": "tool", "content": "x"}]), true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokenizer_config.json") && err.contains("Unknown role: tool"),
        "{err}"
    );
    let none = tempfile::tempdir().unwrap();
    std::fs::write(none.path().join("tokenizer_config.json"), "{}").unwrap();
    let err = ChatTemplate::load(none.path()).err().unwrap().to_string();
    assert!(err.contains("no chat template"), "{err}");
}
