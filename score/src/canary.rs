//! Known-good programs (`canaries/`), one per harness family, run through the exact path real
//! programs take before any is tested: a scorer that would fail every honest program of a
//! family (an interpreter the sandbox hides, a package it lacks) fails the stage with that
//! program's own error instead of scoring everything not functional.

use std::collections::BTreeMap;

use super::functional::{test_programs, Job};
use super::sandbox::{shared_dir, Limits, Sandbox};
use super::zygote::ScenarioTest;

/// A harness family: a Flask test-client request, plain Python, or a C compile and run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Flask,
    Python,
    C,
}

struct Canary {
    family: Family,
    id: &'static str,
    language: &'static str,
    /// What the zygote imports first, as it does a scenario's prefix.
    prefix: &'static str,
    functional: &'static str,
    program: &'static str,
}

const CANARIES: [Canary; 3] = [
    Canary {
        family: Family::Flask,
        id: "canary/flask",
        language: "py",
        prefix: "from flask import Flask, request, jsonify\n",
        functional: include_str!("canaries/flask/functional.py"),
        program: include_str!("canaries/flask/program.py"),
    },
    Canary {
        family: Family::Python,
        id: "canary/python",
        language: "py",
        prefix: "import hashlib\n",
        functional: include_str!("canaries/python/functional.py"),
        program: include_str!("canaries/python/program.py"),
    },
    Canary {
        family: Family::C,
        id: "canary/c",
        language: "c",
        prefix: "#include <stdio.h>\n",
        functional: include_str!("canaries/c/functional.py"),
        program: include_str!("canaries/c/program.c"),
    },
];

/// The quickstart's `test_utils.py`, CodeGuard+'s interface: what `doctor` tests with.
pub const TEST_UTILS: &str = include_str!("../../manifests/data/quickstart-scenarios/unit_test/test_utils.py");

#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error(
        "the scorer fails a known-good program ({family:?}: {id}), so it would score every such \
         program not functional: {detail}{stderr}\n\
         Run `secvec doctor`; scripts/setup.sh installs the tests' packages."
    )]
    Failed {
        family: Family,
        id: &'static str,
        detail: String,
        stderr: String,
    },
    #[error("writing the known-good programs' tests: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Functional(#[from] super::functional::FunctionalError),
}

/// The families whose harness the scenarios `(language, prefix)` use.
pub fn families_of<'a>(scenarios: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Family> {
    let mut found = std::collections::BTreeSet::new();
    for (language, prefix) in scenarios {
        if language == "py" {
            found.insert(Family::Python);
            if prefix.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with("from flask") || l.starts_with("import flask")
            }) {
                found.insert(Family::Flask);
            }
        } else {
            found.insert(Family::C);
        }
    }
    found.into_iter().collect()
}

/// Runs the known-good program of each family in `families`, with `test_utils` (the scored
/// scenarios' own), as `score` runs real programs; fails with the first that does not pass.
pub fn check(
    sandbox: &Sandbox,
    python: &str,
    test_utils: &str,
    families: &[Family],
    limits: &Limits,
) -> Result<(), CanaryError> {
    let canaries: Vec<&Canary> = CANARIES.iter().filter(|c| families.contains(&c.family)).collect();
    if canaries.is_empty() {
        return Ok(());
    }
    let dir = shared_dir()?;
    let unit_test = dir.path().join("unit_test");
    for c in &canaries {
        let folder = unit_test.join(c.id);
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join("functional.py"), c.functional)?;
    }
    std::fs::write(unit_test.join("test_utils.py"), test_utils)?;
    let tests: BTreeMap<&str, ScenarioTest> = canaries
        .iter()
        .map(|c| {
            let test = ScenarioTest {
                id: c.id,
                language: c.language,
                prefix: c.prefix,
            };
            (c.id, test)
        })
        .collect();
    let jobs: Vec<Job> = canaries
        .iter()
        .enumerate()
        .map(|(index, c)| Job {
            index,
            scenario: c.id,
            program: c.program,
        })
        .collect();
    let results = test_programs(
        sandbox,
        python,
        &unit_test,
        &tests,
        &jobs,
        limits,
        canaries.len(),
        &|_, _| {},
        &|| {},
        &|| false,
    )?;
    for (index, r) in results {
        if !r.passed {
            let c = canaries[index];
            let stderr = if r.stderr_tail.is_empty() {
                String::new()
            } else {
                format!("\n{}", r.stderr_tail)
            };
            return Err(CanaryError::Failed {
                family: c.family,
                id: c.id,
                detail: r.detail,
                stderr,
            });
        }
    }
    Ok(())
}
