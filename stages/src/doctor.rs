//! `secvec doctor`: what this machine offers the stages — the project's Python and its packages,
//! the security oracles and their versions, the sandbox, cgroups, libtorch and CUDA — and what
//! is missing, with what to do about it.

use secvec_score::toolchain::{self, HOME_ENV};

/// One line of the report.
pub struct Check {
    pub what: &'static str,
    /// What was found, or why not.
    pub detail: String,
    pub ok: bool,
    /// Whether a missing piece stops stages from running (rather than only narrowing them).
    pub required: bool,
}

/// The packages the scoring harness needs, locked with every dependency (`scripts/lock.sh`), as
/// `scripts/setup.sh` installs them.
const SCORING_LOCK: &str = include_str!("../../scripts/scoring-requirements.txt");

/// The models `scripts/setup.sh` fetches from registry packages into `.models/` (pinned by hash),
/// which the shipped manifests read.
const MODELS: [(&str, &str); 3] = [
    ("SmolLM2-135M", "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("MiniLM-L6-v2", "minilm"),
    (
        "Qwen2.5-Coder-0.5B",
        "qwen2.5-coder-0.5b/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
    ),
];

/// The `(name, version)` pins of a lock file (`name==version \` lines, then their hashes).
fn pins(lock: &str) -> impl Iterator<Item = (&str, &str)> {
    lock.lines()
        .filter_map(|l| l.split_whitespace().next()?.split_once("=="))
}

pub fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    let mut add = |what, ok, required, detail: String| {
        out.push(Check {
            what,
            detail,
            ok,
            required,
        })
    };
    match toolchain::home() {
        Some(h) => add("project", true, false, h.display().to_string()),
        None => add(
            "project",
            false,
            false,
            format!("no folder with .venv above the executable; run scripts/setup.sh or set {HOME_ENV}"),
        ),
    }
    match crate::device::torch_info() {
        Ok(t) => add(
            "libtorch",
            true,
            true,
            format!("{} (secvec-worker), {} CUDA device(s)", t.torch, t.cuda_devices),
        ),
        Err(e) => add("libtorch", false, true, e),
    }
    match toolchain::find("python3")
        .map_err(|e| e.to_string())
        .and_then(|p| toolchain::python(&p).map_err(|e| e.to_string()))
    {
        Ok(py) => {
            let missing: Vec<String> = pins(SCORING_LOCK)
                .filter_map(
                    |(name, version)| match py.packages.get(&name.to_lowercase().replace('_', "-")) {
                        Some(v) if v == version => None,
                        Some(v) => Some(format!("{name}=={version} (has {v})")),
                        None => Some(format!("{name}=={version}")),
                    },
                )
                .collect();
            let detail = format!(
                "{} {} ({} packages)",
                py.executable.display(),
                py.version,
                py.packages.len()
            );
            if missing.is_empty() {
                add("python", true, true, detail);
            } else {
                add(
                    "python",
                    false,
                    true,
                    format!(
                        "{detail}; differs from scripts/scoring-requirements.txt: lacks {} (run scripts/setup.sh)",
                        missing.join(", ")
                    ),
                );
            }
        }
        Err(e) => add("python", false, true, e),
    }
    for (what, name, required) in [
        ("bandit", "bandit", false),
        ("semgrep", "semgrep", false),
        ("gcc", "gcc", false),
        ("cppcheck", "cppcheck", false),
        ("codeql", "codeql", false),
        ("bubblewrap", "/usr/bin/bwrap", true),
        ("setpriv", "/usr/bin/setpriv", true),
    ] {
        let found = toolchain::find(name)
            .map_err(|e| e.to_string())
            .and_then(|p| toolchain::tool(&p).map_err(|e| e.to_string()));
        match found {
            Ok(id) => add(
                what,
                true,
                required,
                format!(
                    "{} ({})",
                    id["version"].as_str().unwrap_or_default(),
                    id["path"].as_str().unwrap_or_default()
                ),
            ),
            Err(e) if what == "codeql" => add(
                what,
                false,
                false,
                format!("not found; `security: auto` uses the open checks ({e})"),
            ),
            Err(e) => add(what, false, required, e),
        }
    }
    for (what, path) in MODELS {
        match toolchain::home().map(|h| h.join(".models").join(path)) {
            // A file's size tells a truncated download at a glance; a folder is named only.
            Some(p) if p.is_file() => {
                let mb = std::fs::metadata(&p).map_or(0, |m| m.len()) / 1_000_000;
                add(what, true, false, format!("{} ({mb} MB)", p.display()));
            }
            Some(p) if p.exists() => add(what, true, false, p.display().to_string()),
            Some(p) => add(
                what,
                false,
                false,
                format!("{} is absent (run scripts/setup.sh)", p.display()),
            ),
            None => add(what, false, false, "no project folder to look in".into()),
        }
    }
    let root = unsafe { libc::geteuid() } == 0;
    add(
        "root",
        root,
        true,
        if root {
            "yes (the sandbox drops every tool and sample to uid 65534)".into()
        } else {
            "no: scoring needs root to set up its sandbox and cgroups".into()
        },
    );
    match secvec_score::cgroup::Cgroup::create(64 << 20, 16) {
        Ok(_) => add("cgroups", true, true, "a memory + pids cgroup can be made".into()),
        Err(e) => add("cgroups", false, true, e.to_string()),
    }
    match known_good_programs() {
        Ok(()) => add(
            "known-good programs",
            true,
            true,
            "a Flask request, plain Python and a C compile and run pass in the sandbox, as `score` runs them".into(),
        ),
        Err(e) => add("known-good programs", false, true, format!("{e:#}")),
    }
    out
}

/// The checks `score` makes at its start, with the quickstart's `test_utils.py`.
fn known_good_programs() -> anyhow::Result<()> {
    use secvec_score::canary::{self, Family};
    let python = toolchain::find("python3")?;
    let (sandbox, python) = secvec_score::sandbox::Sandbox::for_python(&python.display().to_string())?;
    let all = [Family::Flask, Family::Python, Family::C];
    canary::check(&sandbox, &python, canary::TEST_UTILS, &all, &Default::default())?;
    Ok(())
}
