//! The copula detector's tests: its normal scores, the threshold at the stated rate with reasons, a lone surprise, a missing optional feature.

use super::*;

fn lcg(seed: &mut u64) -> f64 {
    *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    ((*seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

fn gaussian_pair(seed: &mut u64) -> (f64, f64) {
    let n = std_normal();
    let a = n.inverse_cdf(lcg(seed));
    let b = 0.8 * a + 0.6 * n.inverse_cdf(lcg(seed));
    (a, b)
}

#[test]
fn normal_scores_follow_the_table_and_extrapolate_monotonically() {
    let mut seed = 7;
    let rows: Vec<Vec<f64>> = (0..50_000)
        .map(|_| {
            let (a, b) = gaussian_pair(&mut seed);
            vec![a.exp(), b]
        })
        .collect();
    let m = Copula::fit(&["a", "b"], vec![None, None], &rows, &[], 0.01);
    // exp(N(0,1)) maps back to about its normal score.
    for z in [-2.0f64, -0.5, 0.0, 1.0, 2.5] {
        let got = m.normal_scores(&[z.exp(), 0.0])[0];
        assert!((got - z).abs() < 0.05, "{z} -> {got}");
    }
    let far = m.normal_scores(&[1e6, 0.0])[0];
    let farther = m.normal_scores(&[1e7, 0.0])[0];
    assert!(far > 4.0 && farther >= far && farther <= Z_CAP);
    assert!((m.correlation[0][1] - 0.98 * 0.8).abs() < 0.03);
}

#[test]
fn threshold_gives_the_stated_rate_and_flags_carry_reasons() {
    let mut seed = 11;
    let rows: Vec<Vec<f64>> = (0..40_000)
        .map(|_| {
            let (a, b) = gaussian_pair(&mut seed);
            vec![a, b]
        })
        .collect();
    let m = Copula::fit(&["a", "b"], vec![None, None], &rows, &[], 0.01);
    let subsets = m.subsets();
    let fresh: Vec<Row> = (0..40_000)
        .map(|i| {
            let (a, b) = gaussian_pair(&mut seed);
            Row {
                time_ms: i,
                values: vec![a, b],
                shown: vec![a, b],
                market: vec![f64::NAN; 2],
                ret: (0.0, 1.0),
            }
        })
        .collect();
    let flags = fresh
        .iter()
        .filter_map(|r| verdict(&m, &subsets, r, 1.0))
        .filter(|v| v.flagged)
        .count();
    let rate = flags as f64 / 40_000.0;
    assert!((rate - 0.01).abs() < 0.002, "{rate}");
    // Against the correlation: each feature alone is ordinary, together they are not.
    let odd = Row {
        time_ms: 0,
        values: vec![1.5, -1.5],
        shown: vec![1.5, -1.5],
        market: vec![f64::NAN; 2],
        ret: (0.0, 1.0),
    };
    let v = verdict(&m, &subsets, &odd, 1.0).unwrap();
    assert!(v.flagged && !v.drivers.is_empty());
    let shares: f64 = v.drivers.iter().map(|d| d.share).sum();
    assert!((shares - 1.0).abs() < 1e-9);
}

#[test]
fn one_feature_far_off_alone_is_flagged_by_its_conditional_surprise() {
    // Six independent features: one at 4.2 sd and the rest ordinary gives a d² below its
    // threshold (about 24 at 1/720), but a conditional surprise beyond its own (about 3.8).
    let mut seed = 5;
    let n = std_normal();
    let rows: Vec<Vec<f64>> = (0..200_000)
        .map(|_| (0..6).map(|_| n.inverse_cdf(lcg(&mut seed))).collect())
        .collect();
    let names = ["a", "b", "c", "d", "e", "f"];
    let m = Copula::fit(&names, vec![None; 6], &rows, &[], 1.0 / 720.0);
    let t = &m.thresholds[0];
    assert!(t.d2 > 20.0 && t.conditional > 3.4 && t.conditional < 4.2, "{t:?}");
    let values = vec![4.2, 0.3, -0.2, 0.1, 0.0, 0.4];
    let row = Row {
        time_ms: 0,
        shown: values.clone(),
        values,
        market: vec![f64::NAN; 6],
        ret: (0.0, 1.0),
    };
    let v = verdict(&m, &m.subsets(), &row, 1.0).unwrap();
    assert!(v.flagged && v.drivers[0].feature == "a", "{v:?}");
    // On fresh rows of the same law, the joint thresholds flag about the stated rate.
    let subsets = m.subsets();
    let flagged = (0..200_000)
        .filter(|i| {
            let values: Vec<f64> = (0..6).map(|_| n.inverse_cdf(lcg(&mut seed))).collect();
            let row = Row {
                time_ms: *i,
                shown: values.clone(),
                values,
                market: vec![f64::NAN; 6],
                ret: (0.0, 1.0),
            };
            verdict(&m, &subsets, &row, 1.0).is_some_and(|v| v.flagged)
        })
        .count();
    let rate = flagged as f64 / 200_000.0;
    assert!((rate * 720.0 - 1.0).abs() < 0.25, "{rate}");
}

#[test]
fn a_missing_optional_feature_uses_its_own_threshold() {
    let mut seed = 3;
    let rows: Vec<Vec<f64>> = (0..20_000)
        .map(|i| {
            let (a, b) = gaussian_pair(&mut seed);
            vec![a, if i % 2 == 0 { b } else { f64::NAN }]
        })
        .collect();
    let m = Copula::fit(&["a", "b"], vec![None, None], &rows, &[1], 0.01);
    assert_eq!(m.thresholds.len(), 2);
    let subsets = m.subsets();
    let row = Row {
        time_ms: 0,
        values: vec![0.1, f64::NAN],
        shown: vec![0.1, f64::NAN],
        market: vec![f64::NAN; 2],
        ret: (0.0, 1.0),
    };
    let v = verdict(&m, &subsets, &row, 1.0).unwrap();
    assert!((v.threshold - m.thresholds[1].d2).abs() < 1e-12);
    // Likewise for a floored feature: missing is missing, never the floor.
    let floored = Copula::fit(&["a", "b"], vec![None, Some(-1.0)], &rows, &[1], 0.01);
    assert!(floored.normal_scores(&[0.1, f64::NAN])[1].is_nan());
    let v = verdict(&floored, &floored.subsets(), &row, 1.0).unwrap();
    assert!((v.threshold - floored.thresholds[1].d2).abs() < 1e-12);
    // With one feature, d² is z²: the 1% threshold is about 2.576².
    assert!((m.thresholds[1].d2 - 2.576f64.powi(2)).abs() < 0.4);
}
