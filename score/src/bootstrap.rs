//! Percentile bootstrap intervals for the scoring metrics, seeded and deterministic: a set's
//! figures resample its scenarios, then each drawn scenario's samples (the two levels the
//! figures vary over); one scenario's figures resample its samples. The interval of a statistic
//! is the `(1 − confidence)/2` and `(1 + confidence)/2` quantiles of its replicates, linearly
//! interpolated as numpy's `percentile` (and so `scipy.stats.bootstrap(method="percentile")`)
//! computes them.

use crate::metrics::{Counts, Judged};

/// How intervals are drawn.
#[derive(Clone, Copy, Debug)]
pub struct Bootstrap {
    pub resamples: usize,
    pub confidence: f64,
    pub seed: u64,
}

/// splitmix64: a small generator whose stream is fixed forever, so an interval never changes
/// with a dependency's version.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by the high half of a 128-bit product.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    /// The counts of as many samples as `samples` holds, drawn from it with replacement.
    fn draw(&mut self, samples: &[&Judged]) -> Counts {
        let mut counts = Counts::default();
        for _ in 0..samples.len() {
            counts.add(samples[self.below(samples.len())], 1);
        }
        counts
    }
}

/// Each scenario's samples one by one (a distinct completion as often as it was sampled).
fn expand<'a>(scenarios: &[&'a [Judged]]) -> Vec<Vec<&'a Judged>> {
    scenarios
        .iter()
        .map(|judged| judged.iter().flat_map(|j| std::iter::repeat_n(j, j.count)).collect())
        .collect()
}

/// One replicate: for each drawn scenario, its index and the counts of its resampled samples.
pub type Replicate = Vec<(usize, Counts)>;

impl Bootstrap {
    /// `resamples` replicates of `scenarios` (each a scenario's distinct completions with their
    /// counts). `across_scenarios`: draw the scenarios too (a set's figures), else keep each
    /// one and resample only its samples.
    pub fn replicates(&self, scenarios: &[&[Judged]], across_scenarios: bool) -> Vec<Replicate> {
        let samples = expand(scenarios);
        let mut stream = Stream(self.seed);
        (0..self.resamples)
            .map(|_| {
                (0..samples.len())
                    .map(|slot| {
                        let s = if across_scenarios {
                            stream.below(samples.len())
                        } else {
                            slot
                        };
                        (s, stream.draw(&samples[s]))
                    })
                    .collect()
            })
            .collect()
    }

    /// `resamples` paired replicates of two measurements of the same scenarios (`a[i]` and
    /// `b[i]` are scenario i's completions under each): both halves of a replicate draw the
    /// same scenarios, and each then resamples its own samples (they were drawn independently).
    pub fn paired_replicates(&self, a: &[&[Judged]], b: &[&[Judged]]) -> Vec<(Replicate, Replicate)> {
        assert_eq!(a.len(), b.len(), "paired measurements of different scenario counts");
        let (a, b) = (expand(a), expand(b));
        let mut stream = Stream(self.seed);
        (0..self.resamples)
            .map(|_| {
                (0..a.len())
                    .map(|_| {
                        let s = stream.below(a.len());
                        ((s, stream.draw(&a[s])), (s, stream.draw(&b[s])))
                    })
                    .unzip()
            })
            .collect()
    }

    /// The interval of the mean of `values` (one observation each, e.g. a pair's margin),
    /// resampling them; `None` for no values.
    pub fn mean_interval(&self, values: &[f64]) -> Option<(f64, f64)> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        self.interval(
            self.index_draws(values.len())
                .map(|drawn| Some(drawn.iter().map(|&i| values[i]).sum::<f64>() / n)),
        )
    }

    /// `resamples` draws of `n` indices into `0..n` with replacement, for a statistic of `n`
    /// units resampled together (n > 0).
    pub fn index_draws(&self, n: usize) -> impl Iterator<Item = Vec<usize>> {
        let mut stream = Stream(self.seed);
        (0..self.resamples).map(move |_| (0..n).map(|_| stream.below(n)).collect())
    }

    /// The interval of a statistic from its replicates' values (`None` where a replicate has
    /// none, e.g. no judged scenario was drawn); `None` when no replicate has a value.
    pub fn interval(&self, values: impl IntoIterator<Item = Option<f64>>) -> Option<(f64, f64)> {
        let mut v: Vec<f64> = values.into_iter().flatten().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let alpha = (1.0 - self.confidence) / 2.0;
        Some((quantile(&v, alpha), quantile(&v, 1.0 - alpha)))
    }
}

/// numpy's default ("linear") quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (below, frac) = (pos.floor() as usize, pos.fract());
    match sorted.get(below + 1) {
        Some(&above) => sorted[below] + frac * (above - sorted[below]),
        None => sorted[below],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(count: usize, functional: bool) -> Judged {
        Judged {
            count,
            valid: true,
            functional,
            secure: true,
        }
    }

    #[test]
    fn quantiles_interpolate_as_numpy() {
        let v = [1.0, 2.0, 4.0, 8.0];
        // numpy.percentile([1, 2, 4, 8], [2.5, 50, 97.5]) = [1.075, 3.0, 7.7]
        assert!((quantile(&v, 0.025) - 1.075).abs() < 1e-12);
        assert!((quantile(&v, 0.5) - 3.0).abs() < 1e-12);
        assert!((quantile(&v, 0.975) - 7.7).abs() < 1e-12);
    }

    #[test]
    fn replicates_are_seeded_and_keep_each_scenarios_sample_count() {
        let a = [judged(3, true), judged(2, false)];
        let b = [judged(4, false)];
        let boot = Bootstrap {
            resamples: 50,
            confidence: 0.95,
            seed: 1,
        };
        let r1 = boot.replicates(&[&a, &b], true);
        assert_eq!(r1, boot.replicates(&[&a, &b], true), "not deterministic");
        assert_ne!(r1, Bootstrap { seed: 2, ..boot }.replicates(&[&a, &b], true));
        for rep in &r1 {
            for (s, c) in rep {
                assert_eq!(c.n, [5, 4][*s]);
                assert!(c.c <= [5, 0][*s]);
            }
        }
        // Drawn scenarios vary; kept ones do not.
        assert!(r1.iter().any(|rep| rep[0].0 == rep[1].0));
        assert!(boot
            .replicates(&[&a, &b], false)
            .iter()
            .all(|rep| rep[0].0 == 0 && rep[1].0 == 1));
        // A scenario whose samples all agree has a point interval.
        let all = boot.replicates(&[&b], false);
        let iv = boot.interval(all.iter().map(|rep| Some(rep[0].1.c as f64)));
        assert_eq!(iv, Some((0.0, 0.0)));
        assert_eq!(boot.interval([None, None]), None);
        // A mean's interval lies within the values and around their mean.
        let (lo, hi) = boot.mean_interval(&[1.0, 2.0, 3.0, 10.0]).unwrap();
        assert!(1.0 <= lo && lo < 4.0 && 4.0 < hi && hi <= 10.0, "[{lo}, {hi}]");
        assert_eq!(boot.mean_interval(&[]), None);
    }
}
