//! Scoring rules and tests used by `evaluate`: QLIKE, Diebold-Mariano, ROC and PR AUC, Brier,
//! and Kupiec's unconditional-coverage test.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// QLIKE loss of a variance forecast `f` for realized variance `rv`:
/// `rv/f - ln(rv/f) - 1` (zero when `f == rv`, minimised in expectation by `f = E[rv]`).
#[must_use]
pub fn qlike(rv: f64, f: f64) -> f64 {
    let x = rv / f;
    x - x.ln() - 1.0
}

/// Diebold-Mariano test of equal predictive accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DieboldMariano {
    /// Mean loss difference divided by its HAC standard error; negative means the first
    /// forecast has the lower loss.
    pub statistic: f64,
    /// Two-sided p-value from the standard normal.
    pub p_value: f64,
    /// Mean loss difference.
    pub mean_difference: f64,
    /// Newey-West lag used.
    pub lag: usize,
    /// Number of differences.
    pub n: usize,
}

/// Diebold-Mariano on loss differences `d` (first minus second forecast) with a Newey-West
/// (Bartlett) variance of `lag` lags. `group[i]` names the series of point `i` (the asset): the
/// points come in time order within each group, and autocovariances pair points of one group only.
#[must_use]
pub fn diebold_mariano(d: &[f64], group: &[usize], lag: usize) -> Option<DieboldMariano> {
    let n = d.len();
    if n < 2 || group.len() != n {
        return None;
    }
    let nf = n as f64;
    let mean = d.iter().sum::<f64>() / nf;
    let centred: Vec<f64> = d.iter().map(|x| x - mean).collect();
    let mut variance = centred.iter().map(|x| x * x).sum::<f64>() / nf;
    for k in 1..=lag {
        let gamma = (k..n)
            .filter(|&i| group[i] == group[i - k])
            .map(|i| centred[i] * centred[i - k])
            .sum::<f64>()
            / nf;
        let weight = 1.0 - k as f64 / (lag as f64 + 1.0);
        variance += 2.0 * weight * gamma;
    }
    if variance.is_nan() || variance <= 0.0 {
        return None;
    }
    let statistic = mean / (variance / nf).sqrt();
    let normal = Normal::new(0.0, 1.0).ok()?;
    Some(DieboldMariano {
        statistic,
        p_value: 2.0 * (1.0 - normal.cdf(statistic.abs())),
        mean_difference: mean,
        lag,
        n,
    })
}

/// Diebold-Mariano on the daily cross-sectional means of `d`: the differences of each day
/// (`day[i]`, e.g. the origin's hour divided by 24) averaged, then the test on that series in day
/// order with `lag` lags. Assets move together, so [`diebold_mariano`] on the pooled points
/// counts a market-wide day once per asset and overstates the evidence; this counts it once.
/// `n` is the number of days.
#[must_use]
pub fn diebold_mariano_daily(d: &[f64], day: &[i64], lag: usize) -> Option<DieboldMariano> {
    if day.len() != d.len() {
        return None;
    }
    let mut days: std::collections::BTreeMap<i64, (f64, usize)> = std::collections::BTreeMap::new();
    for (&x, &k) in d.iter().zip(day) {
        let e = days.entry(k).or_insert((0.0, 0));
        e.0 += x;
        e.1 += 1;
    }
    let means: Vec<f64> = days.values().map(|&(sum, n)| sum / n as f64).collect();
    diebold_mariano(&means, &vec![0; means.len()], lag)
}

/// Area under the ROC curve (ties share ranks); None without both classes.
#[must_use]
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels.iter().filter(|&&y| y).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let rank = (i + j + 2) as f64 / 2.0;
        let tied_positives = order[i..=j].iter().filter(|&&k| labels[k]).count();
        {
            rank_sum += rank * tied_positives as f64;
        }
        i = j + 1;
    }
    let (p, q) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * q))
}

/// Average precision (area under the precision-recall curve as a step sum over distinct
/// thresholds, as scikit-learn computes it); None without positives.
#[must_use]
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let positives = labels.iter().filter(|&&y| y).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut ap = 0.0;
    let mut last_recall = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            if labels[k] { tp += 1 } else { fp += 1 }
        }
        let (recall, precision) = (tp as f64 / positives as f64, tp as f64 / (tp + fp) as f64);
        ap += (recall - last_recall) * precision;
        last_recall = recall;
        i = j + 1;
    }
    Some(ap)
}

/// Brier score: mean squared difference between probability and outcome.
#[must_use]
pub fn brier(probabilities: &[f64], labels: &[bool]) -> Option<f64> {
    if probabilities.is_empty() {
        return None;
    }
    let n = probabilities.len() as f64;
    Some(
        probabilities
            .iter()
            .zip(labels)
            .map(|(p, &y)| (p - f64::from(u8::from(y))).powi(2))
            .sum::<f64>()
            / n,
    )
}

/// Kupiec's proportion-of-failures likelihood-ratio test: p-value of observing `breaches` in
/// `n` trials if the true breach probability is `expected`.
#[must_use]
pub fn kupiec_p_value(breaches: usize, n: usize, expected: f64) -> Option<f64> {
    if n == 0 || !(0.0 < expected && expected < 1.0) {
        return None;
    }
    let (x, nf) = (breaches as f64, n as f64);
    let observed = x / nf;
    // x ln p + (n-x) ln(1-p), with 0 ln 0 = 0.
    let log_lik = |p: f64| {
        let a = if x > 0.0 { x * p.ln() } else { 0.0 };
        let b = if nf - x > 0.0 {
            (nf - x) * (1.0 - p).ln()
        } else {
            0.0
        };
        a + b
    };
    let lr = (-2.0 * (log_lik(expected) - log_lik(observed))).max(0.0);
    let chi2 = ChiSquared::new(1.0).ok()?;
    Some(1.0 - chi2.cdf(lr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qlike_is_zero_at_the_truth_and_positive_elsewhere() {
        assert_eq!(qlike(2.0, 2.0), 0.0);
        assert!((qlike(1.0, 2.0) - (0.5 - 0.5f64.ln() - 1.0)).abs() < 1e-15);
        assert!(qlike(3.0, 2.0) > 0.0);
    }

    #[test]
    fn roc_auc_by_hand_with_ties() {
        // positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4)(0.8>0.1)(0.4=0.4 half)(0.4>0.1)
        let auc = roc_auc(&[0.8, 0.4, 0.4, 0.1], &[true, true, false, false]).unwrap();
        assert!((auc - 3.5 / 4.0).abs() < 1e-12);
        assert!(roc_auc(&[0.1, 0.2], &[true, true]).is_none());
    }

    #[test]
    fn average_precision_by_hand() {
        // scikit-learn: average_precision_score([1,0,1,0], [0.9,0.8,0.7,0.1]) = (1 + 2/3) / 2
        let ap = average_precision(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false]).unwrap();
        assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // A tie groups both points into one threshold: precision 1/2 at recall 1.
        let ap = average_precision(&[0.5, 0.5], &[true, false]).unwrap();
        assert!((ap - 0.5).abs() < 1e-12);
    }

    #[test]
    fn brier_by_hand() {
        let b = brier(&[0.9, 0.2], &[true, false]).unwrap();
        assert!((b - (0.01 + 0.04) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn diebold_mariano_by_hand() {
        // No lag: statistic = mean / sqrt(var / n), var the population variance.
        let d = [1.0, -1.0, 2.0, 2.0];
        let dm = diebold_mariano(&d, &[0, 0, 0, 0], 0).unwrap();
        let (mean, var) = (1.0, (0.0 + 4.0 + 1.0 + 1.0) / 4.0);
        assert!((dm.statistic - mean / (var / 4.0f64).sqrt()).abs() < 1e-12);
        // Lag 1 within one group: gamma1 = (-2*0 + 1*-2 + 1*1)/4 = -0.25 ... centred d = [0,-2,1,1].
        let dm1 = diebold_mariano(&d, &[0, 0, 0, 0], 1).unwrap();
        let var1 = var + 2.0 * 0.5 * ((0.0 * -2.0) + (-2.0 * 1.0) + (1.0 * 1.0)) / 4.0;
        assert!((dm1.statistic - mean / (var1 / 4.0f64).sqrt()).abs() < 1e-12);
        // Across groups no pair counts: same as lag 0.
        let dm2 = diebold_mariano(&d, &[0, 1, 2, 3], 1).unwrap();
        assert!((dm2.statistic - dm.statistic).abs() < 1e-12);
        assert!(dm.p_value > 0.0 && dm.p_value < 1.0);
    }

    /// Ten assets whose differences are the same each day: the pooled test counts every day ten
    /// times, and is sqrt(10) times as sure as the daily test, which counts it once.
    #[test]
    fn diebold_mariano_daily_counts_a_common_day_once() {
        let (assets, days) = (10_usize, 60_i64);
        let daily: Vec<f64> = (0..days)
            .map(|t| 0.1 + ((t * 7) % 11) as f64 / 10.0 - 0.5)
            .collect();
        // Asset-major, days in order within each asset, as `evaluate` holds its points.
        let d: Vec<f64> = (0..assets).flat_map(|_| daily.iter().copied()).collect();
        let group: Vec<usize> = (0..assets)
            .flat_map(|a| std::iter::repeat_n(a, daily.len()))
            .collect();
        let day: Vec<i64> = (0..assets).flat_map(|_| 0..days).collect();
        let pooled = diebold_mariano(&d, &group, 1).unwrap();
        let by_day = diebold_mariano_daily(&d, &day, 1).unwrap();
        assert_eq!(by_day.n, 60);
        assert!((by_day.mean_difference - pooled.mean_difference).abs() < 1e-12);
        let ratio = pooled.statistic / by_day.statistic;
        assert!((ratio - 10f64.sqrt()).abs() < 0.05 * 10f64.sqrt(), "{ratio}");
        assert!(by_day.p_value > pooled.p_value);
        // The daily test of one asset is the pooled test of it.
        let one = diebold_mariano_daily(&daily, &(0..days).collect::<Vec<_>>(), 1).unwrap();
        let plain = diebold_mariano(&daily, &[0; 60], 1).unwrap();
        assert!((one.statistic - plain.statistic).abs() < 1e-12);
    }

    #[test]
    fn kupiec_by_hand() {
        assert!((kupiec_p_value(10, 1000, 0.01).unwrap() - 1.0).abs() < 1e-9);
        // 20 breaches in 1000 at 1%: LR = 7.827..., p about 0.0051.
        let p = kupiec_p_value(20, 1000, 0.01).unwrap();
        assert!((p - 0.00515).abs() < 2e-4, "{p}");
        assert!(kupiec_p_value(0, 1000, 0.01).unwrap() < 0.01);
    }
}
