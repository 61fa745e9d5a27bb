//! The difference between two measurements of the same scenarios (a steered model against its
//! W_sec, say), metric by metric at k = 1, with a paired bootstrap interval: each replicate draws
//! the same scenarios for both sides, so how hard a scenario is cancels out of the difference and
//! only what the two models do differently varies.

use crate::bootstrap::Bootstrap;
use crate::metrics::{set_means, Counts, Judged, ScenarioMetrics};

/// One scenario as one side measured it.
#[derive(Clone, Copy, Debug)]
pub struct Measured<'a> {
    pub judged: &'a [Judged],
    /// An oracle judged every program of it that parses.
    pub known: bool,
}

/// A metric's difference (`a − b`) and its interval; `None` where either side has no value
/// (a security metric with no scenario both sides' oracles judged).
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    pub metric: String,
    pub value: Option<f64>,
    pub interval: Option<(f64, f64)>,
}

/// `a[i]` and `b[i]` are scenario i under each side. Security metrics average over the scenarios
/// both sides judged, so that the two means are over the same scenarios.
pub fn differences(a: &[Measured], b: &[Measured], boot: &Bootstrap) -> Vec<Difference> {
    assert_eq!(a.len(), b.len(), "paired measurements of different scenario counts");
    let known: Vec<bool> = a.iter().zip(b).map(|(x, y)| x.known && y.known).collect();
    let means = |sides: &[(usize, Counts)]| {
        let all: Vec<ScenarioMetrics> = sides
            .iter()
            .map(|(s, c)| ScenarioMetrics::of(c, &[1], known[*s]))
            .collect();
        set_means(&all, &[1])
    };
    let whole = |side: &[Measured]| -> Vec<(usize, Counts)> {
        side.iter()
            .enumerate()
            .map(|(s, m)| (s, Counts::of(m.judged)))
            .collect()
    };
    let diff = |x: Vec<(String, Option<f64>)>, y: Vec<(String, Option<f64>)>| -> Vec<(String, Option<f64>)> {
        x.into_iter()
            .zip(y)
            .map(|((name, p), (_, q))| (name, p.zip(q).map(|(p, q)| p - q)))
            .collect()
    };
    let point = diff(means(&whole(a)), means(&whole(b)));
    let ja: Vec<&[Judged]> = a.iter().map(|m| m.judged).collect();
    let jb: Vec<&[Judged]> = b.iter().map(|m| m.judged).collect();
    let replicated: Vec<Vec<(String, Option<f64>)>> = boot
        .paired_replicates(&ja, &jb)
        .iter()
        .map(|(x, y)| diff(means(x), means(y)))
        .collect();
    point
        .into_iter()
        .enumerate()
        .map(|(i, (metric, value))| Difference {
            interval: value.and_then(|_| boot.interval(replicated.iter().map(|r| r[i].1))),
            metric,
            value,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(n: usize, functional: usize, secure: usize) -> Vec<Judged> {
        // `secure` of the functional ones are secure; the rest of the samples are not.
        let j = |count, functional, secure| Judged {
            count,
            valid: true,
            functional,
            secure,
        };
        vec![
            j(secure, true, true),
            j(functional - secure, true, false),
            j(n - functional, false, false),
        ]
    }

    fn measured(v: &[Vec<Judged>]) -> Vec<Measured<'_>> {
        v.iter().map(|j| Measured { judged: j, known: true }).collect()
    }

    fn value<'a>(d: &'a [Difference], metric: &str) -> &'a Difference {
        d.iter().find(|d| d.metric == metric).unwrap()
    }

    #[test]
    fn a_shift_every_scenario_shares_is_found_and_no_shift_is_not() {
        let boot = Bootstrap {
            resamples: 2000,
            confidence: 0.95,
            seed: 3,
        };
        // Scenarios of very different difficulty; the treatment makes 6 more of 20 samples
        // secure in every one of them.
        let counts = [
            (20, 18, 2),
            (20, 10, 1),
            (20, 16, 8),
            (20, 12, 0),
            (20, 19, 10),
            (20, 8, 2),
        ];
        let base: Vec<Vec<Judged>> = counts.iter().map(|&(n, f, s)| scenario(n, f, s)).collect();
        let treated: Vec<Vec<Judged>> = counts.iter().map(|&(n, f, s)| scenario(n, f, s + 6)).collect();
        let d = differences(&measured(&treated), &measured(&base), &boot);
        let sec = value(&d, "sec-pass@1");
        assert!((sec.value.unwrap() - 0.3).abs() < 1e-12, "{sec:?}");
        let (lo, hi) = sec.interval.unwrap();
        assert!(lo > 0.0 && lo < 0.3 && 0.3 < hi, "{sec:?}");
        // pass@1 did not move: 0, and an interval around it.
        let pass = value(&d, "pass@1");
        assert_eq!(pass.value, Some(0.0));
        let (lo, hi) = pass.interval.unwrap();
        assert!(lo < 0.0 && 0.0 < hi, "{pass:?}");
        // A scenario one side's oracle did not judge leaves the security means of both.
        let mut unjudged = measured(&treated);
        unjudged[0].known = false;
        let d = differences(&unjudged, &measured(&base), &boot);
        assert!((value(&d, "sec-pass@1").value.unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(value(&d, "pass@1").value, Some(0.0));
        let none: Vec<Measured> = measured(&base)
            .into_iter()
            .map(|m| Measured { known: false, ..m })
            .collect();
        let d = differences(&none, &measured(&base), &boot);
        assert_eq!(
            value(&d, "sven_sr"),
            &Difference {
                metric: "sven_sr".into(),
                value: None,
                interval: None
            }
        );
    }
}
