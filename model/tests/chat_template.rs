//! Chat templates render as transformers' `apply_chat_template` renders them (run in the test):
//! SmolLM2-Instruct's template and one that uses what real templates lean on (whitespace
//! control, trim_blocks/lstrip_blocks, slicing, Python string methods, `loop.last`,
//! `raise_exception`). A template's work is budgeted: one that loops or builds huge text fails
//! fast with a clear error, while a long conversation still renders.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{fixtures, peft_python};
use secvec_model::chat_template::{ChatTemplate, ChatTemplateError};
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

/// The most memory this process has held (Linux), in MiB.
fn peak_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

#[test]
fn a_template_that_loops_or_builds_huge_text_stops_quickly_with_a_clear_error() {
    let hostile = [
        // 40 doublings: 40 instructions, 2 TB.
        format!("{{% set s = 'ab' %}}{}{{{{ s }}}}", "{% set s = s ~ s %}".repeat(40)),
        // 10^10 iterations.
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}".into(),
        "{{ 'x' * 1000000000 }}".into(),
        // Python's methods: a replacement 1000 times longer, and a width of 10 GB.
        "{% set s = 'a' * 1000000 %}{{ s.replace('a', 'b' * 1000) }}".into(),
        "{{ '{:>9999999999}'.format(1) }}".into(),
        "{{ 'a' | indent(9999999999, true) }}".into(),
    ];
    let messages = json!([{"role": "user", "content": "hi"}]);
    for template in &hostile {
        let dir = folder(template);
        let ours = ChatTemplate::load(dir.path()).unwrap();
        let started = Instant::now();
        let err = ours.render(&messages, true).unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, ChatTemplateError::OutOfFuel { .. }), "{template}: {err}");
        assert!(err.to_string().contains("ran out of its budget"), "{err}");
        assert!(took < Duration::from_secs(2), "{template} took {took:?}");
    }
    if let Some(peak) = peak_mib() {
        assert!(peak < 1024, "the process peaked at {peak} MiB");
    }
}

#[test]
fn a_long_conversation_renders_within_its_budget() {
    // A template that copies each message several times over, as tool-calling templates do with
    // `tojson`: the budget grows with the conversation.
    let copying = "{% for m in messages %}{{ m | tojson }}{{ m['content'] + m['content'] }}{{ m['content'].strip() | upper }}{% endfor %}";
    let long = "def f(x):\n    return x\n".repeat(200_000);
    let messages = json!([{"role": "user", "content": long}, {"role": "assistant", "content": long}]);
    for template in [SMOLLM2, STRESS, copying] {
        let dir = folder(template);
        let rendered = ChatTemplate::load(dir.path()).unwrap().render(&messages, true).unwrap();
        assert!(rendered.len() > 2 * long.len(), "{}", rendered.len());
    }
}
