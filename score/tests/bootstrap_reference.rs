//! The metrics' bootstrap intervals against references run in the test: one scenario's (its
//! samples resampled) against `scipy.stats.bootstrap(method="percentile")`, and a set's (its
//! scenarios, then their samples, resampled) against the same two-level resampling written out
//! in numpy. Both sides draw 20,000 replicates from their own random streams, so they agree to
//! within Monte Carlo error, not bit for bit.

use std::path::Path;
use std::process::Command;

use secvec_score::bootstrap::Bootstrap;
use secvec_score::metrics::{Counts, Judged};

fn python() -> Option<std::path::PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import scipy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("notice: no .venv with scipy (run scripts/setup.sh); skipping the bootstrap reference");
    }
    ok.then_some(py)
}

fn scenario(n: usize, functional: usize) -> Vec<Judged> {
    let j = |count, functional| Judged {
        count,
        valid: true,
        functional,
        secure: true,
    };
    vec![j(functional, true), j(n - functional, false)]
}

const SCRIPT: &str = r#"
import json, sys
import numpy as np
from scipy import stats
counts = json.loads(sys.argv[1])  # [[n, functional], ...]
one = np.array([1.0] * counts[0][1] + [0.0] * (counts[0][0] - counts[0][1]))
single = stats.bootstrap((one,), np.mean, n_resamples=20000, method="percentile",
                         confidence_level=0.95, random_state=np.random.default_rng(0)).confidence_interval
rng = np.random.default_rng(1)
scenarios = [np.array([1.0] * f + [0.0] * (n - f)) for n, f in counts]
means = []
for _ in range(20000):
    drawn = rng.integers(0, len(scenarios), len(scenarios))
    means.append(np.mean([rng.choice(scenarios[s], len(scenarios[s])).mean() for s in drawn]))
two = np.percentile(means, [2.5, 97.5])
print(json.dumps({"single": [single.low, single.high], "two_level": list(two)}))
"#;

#[test]
fn intervals_match_scipy_and_a_two_level_resampling_in_numpy() {
    let Some(python) = python() else { return };
    let counts = [(40, 15), (25, 20), (30, 3), (10, 10), (50, 26)];
    let out = Command::new(&python)
        .args(["-c", SCRIPT])
        .arg(serde_json::to_string(&counts).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pair = |v: &serde_json::Value| (v[0].as_f64().unwrap(), v[1].as_f64().unwrap());

    let boot = Bootstrap {
        resamples: 20000,
        confidence: 0.95,
        seed: 0,
    };
    let share = |c: &Counts| c.c as f64 / c.n as f64;
    let scenarios: Vec<Vec<Judged>> = counts.iter().map(|&(n, f)| scenario(n, f)).collect();

    let single = boot.replicates(&[&scenarios[0]], false);
    let ours = boot.interval(single.iter().map(|rep| Some(share(&rep[0].1)))).unwrap();
    let (lo, hi) = pair(&want["single"]);
    // The replicates' mean takes steps of 1/40: the percentiles land within a step.
    assert!(
        (ours.0 - lo).abs() <= 0.026 && (ours.1 - hi).abs() <= 0.026,
        "ours {ours:?}, scipy ({lo}, {hi})"
    );

    let refs: Vec<&[Judged]> = scenarios.iter().map(Vec::as_slice).collect();
    let two = boot.replicates(&refs, true);
    let ours = boot
        .interval(
            two.iter()
                .map(|rep| Some(rep.iter().map(|(_, c)| share(c)).sum::<f64>() / rep.len() as f64)),
        )
        .unwrap();
    let (lo, hi) = pair(&want["two_level"]);
    assert!(
        (ours.0 - lo).abs() <= 0.01 && (ours.1 - hi).abs() <= 0.01,
        "ours {ours:?}, numpy ({lo}, {hi})"
    );
    // Not a degenerate interval: scenarios this different spread the set's mean widely.
    assert!(ours.1 - ours.0 > 0.2, "{ours:?}");
}
