//! Spearman's rank correlation, as `scipy.stats.spearmanr` computes it: Pearson's correlation of
//! the ranks, ties given their average rank.

/// ρ of `x` and `y` (same length); `None` for fewer than two points or where either side is
/// constant (ρ is undefined there, as scipy's NaN says).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len(), "spearman of unequal lengths");
    if x.len() < 2 {
        return None;
    }
    pearson(&ranks(x), &ranks(y))
}

/// 1-based ranks, ties sharing the mean of the ranks they span.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_share_ties_and_rho_has_its_extremes() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
        assert_eq!(spearman(&[0.0, 0.5, 1.0], &[1.0, 4.0, 9.0]), Some(1.0));
        assert_eq!(spearman(&[0.0, 0.5, 1.0], &[3.0, 2.0, -7.0]), Some(-1.0));
        assert_eq!(spearman(&[0.0, 0.5, 1.0], &[2.0, 2.0, 2.0]), None);
        assert_eq!(spearman(&[1.0], &[2.0]), None);
    }
}
