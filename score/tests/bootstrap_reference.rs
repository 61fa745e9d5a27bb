//! The statistics against references run in the test. Bootstrap intervals: one scenario's (its
//! samples resampled) against `scipy.stats.bootstrap(method="percentile")`; a set's (its
//! scenarios, then their samples, resampled) against the same two-level resampling written out
//! in numpy; a paired difference of two measurements of the same scenarios against the paired
//! two-level resampling in numpy; a paired mean (per-pair margins) against
//! `scipy.stats.bootstrap(paired=True)`. Both sides draw 20,000 replicates from their own random
//! streams, so they agree to within Monte Carlo error, not bit for bit. Spearman's ρ against
//! `scipy.stats.spearmanr`, exactly.

use std::path::Path;
use std::process::Command;

use secvec_score::bootstrap::Bootstrap;
use secvec_score::metrics::{Counts, Judged};
use secvec_score::paired::{differences, Measured};

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

const PAIRED: &str = r#"
import json, sys
import numpy as np
from scipy import stats
a, b, x, y = json.loads(sys.argv[1])  # [[n, functional], ...] per side; per-pair values x, y
side = lambda counts: [np.array([1.0] * f + [0.0] * (n - f)) for n, f in counts]
a, b = side(a), side(b)
rng = np.random.default_rng(2)
diffs = []
for _ in range(20000):
    drawn = rng.integers(0, len(a), len(a))
    diffs.append(np.mean([rng.choice(a[s], len(a[s])).mean() - rng.choice(b[s], len(b[s])).mean()
                          for s in drawn]))
margins = stats.bootstrap((np.array(x), np.array(y)), lambda p, q: np.mean(p - q), paired=True,
                          n_resamples=20000, method="percentile", confidence_level=0.95,
                          random_state=np.random.default_rng(3)).confidence_interval
print(json.dumps({"scenarios": list(np.percentile(diffs, [2.5, 97.5])),
                  "pairs": [margins.low, margins.high]}))
"#;

#[test]
fn paired_differences_match_a_paired_resampling_in_numpy_and_scipy() {
    let Some(python) = python() else { return };
    let a = [(20, 15), (20, 12), (20, 3), (20, 18), (20, 9), (20, 14)];
    let b = [(20, 11), (20, 10), (20, 1), (20, 17), (20, 4), (20, 12)];
    let x = [0.31, -0.12, 0.05, 0.44, 0.02, 0.18, -0.07, 0.26, 0.11, 0.09];
    let y = [0.20, -0.15, 0.07, 0.30, -0.01, 0.02, -0.11, 0.21, 0.15, 0.01];
    let out = Command::new(&python)
        .args(["-c", PAIRED])
        .arg(serde_json::to_string(&(a, b, x, y)).unwrap())
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
    let side =
        |counts: &[(usize, usize)]| -> Vec<Vec<Judged>> { counts.iter().map(|&(n, f)| scenario(n, f)).collect() };
    let (sa, sb) = (side(&a), side(&b));
    fn measured(v: &[Vec<Judged>]) -> Vec<Measured<'_>> {
        v.iter().map(|j| Measured { judged: j, known: true }).collect()
    }
    let pass = differences(&measured(&sa), &measured(&sb), &boot)
        .into_iter()
        .find(|d| d.metric == "pass@1")
        .unwrap();
    assert!((pass.value.unwrap() - 16.0 / 120.0).abs() < 1e-12, "{pass:?}");
    let ours = pass.interval.unwrap();
    let (lo, hi) = pair(&want["scenarios"]);
    assert!(
        (ours.0 - lo).abs() <= 0.01 && (ours.1 - hi).abs() <= 0.01,
        "ours {ours:?}, numpy ({lo}, {hi})"
    );
    // Every scenario moved the same way: the paired interval excludes 0.
    assert!(ours.0 > 0.0, "{ours:?}");

    let per_pair: Vec<f64> = x.iter().zip(&y).map(|(p, q)| p - q).collect();
    let ours = boot.mean_interval(&per_pair).unwrap();
    let (lo, hi) = pair(&want["pairs"]);
    assert!(
        (ours.0 - lo).abs() <= 0.005 && (ours.1 - hi).abs() <= 0.005,
        "ours {ours:?}, scipy ({lo}, {hi})"
    );
}

#[test]
fn spearman_matches_scipy_with_ties() {
    let Some(python) = python() else { return };
    let x = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0];
    let ys: [[f64; 7]; 4] = [
        [0.1, 0.3, 0.2, 0.5, 0.5, 0.9, 0.4],
        [3.0, 2.0, 2.0, 1.0, -1.0, -1.0, -4.0],
        [0.2, 0.2, 0.2, 0.1, 0.3, 0.2, 0.2],
        [5.0, 1.0, 4.0, 2.0, 3.0, 0.0, 6.0],
    ];
    let script = "import json, sys\nfrom scipy import stats\nx, ys = json.loads(sys.argv[1])\n\
                  print(json.dumps([stats.spearmanr(x, y).statistic for y in ys]))";
    let out = Command::new(&python)
        .args(["-c", script])
        .arg(serde_json::to_string(&(x, ys)).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: Vec<f64> = serde_json::from_slice(&out.stdout).unwrap();
    for (y, want) in ys.iter().zip(want) {
        let ours = secvec_score::correlation::spearman(&x, y).unwrap();
        assert!((ours - want).abs() < 1e-12, "ours {ours}, scipy {want} for {y:?}");
    }
}
