//! The copula detector's tests: its normal scores, the threshold at the stated rate with reasons, a lone surprise, a missing optional feature, a conditioned marginal.

use super::marginal::{Z_CAP, std_normal, to_normal};
use super::verdict::{Hour, Verdict, verdict, verdict_after};
use super::*;
use crate::anomaly::features::Row;
use statrs::distribution::ContinuousCDF;

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

/// `n` rows `[a, b]` of pairs drawn by `pair`.
fn pairs_of(n: usize, seed: &mut u64, pair: fn(&mut u64) -> (f64, f64)) -> Vec<Vec<f64>> {
    (0..n)
        .map(|_| {
            let (a, b) = pair(seed);
            vec![a, b]
        })
        .collect()
}

/// [`pair_fit`] with `b` optional.
fn optional_b_fit(rows: &[Vec<f64>]) -> Copula {
    Copula::fit(
        &["a", "b"],
        vec![None, None],
        rows,
        &[1],
        0.01,
        &[],
        Directed::default(),
    )
}

/// A copula over two features `a` and `b`, neither optional nor floored, at a 1% rate.
fn pair_fit(rows: &[Vec<f64>], given: &[(usize, usize)]) -> Copula {
    Copula::fit(
        &["a", "b"],
        vec![None, None],
        rows,
        &[],
        0.01,
        given,
        Directed::default(),
    )
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
    let m = pair_fit(&rows, &[]);
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
    let rows = pairs_of(40_000, &mut seed, gaussian_pair);
    let m = pair_fit(&rows, &[]);
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

/// A row of six features, shown as their values.
fn row_of(time_ms: i64, values: Vec<f64>) -> Row {
    Row {
        time_ms,
        shown: values.clone(),
        values,
        market: vec![f64::NAN; 6],
        ret: (0.0, 1.0),
    }
}

/// `n` rows of six independent standard normal features.
fn independent_rows(n: usize, seed: &mut u64) -> Vec<Vec<f64>> {
    let normal = std_normal();
    (0..n)
        .map(|_| (0..6).map(|_| normal.inverse_cdf(lcg(seed))).collect())
        .collect()
}

/// The share of 200,000 fresh rows of six independent standard normal features `m` flags.
fn flag_rate(m: &Copula, seed: &mut u64) -> f64 {
    let subsets = m.subsets();
    let flagged = independent_rows(200_000, seed)
        .into_iter()
        .enumerate()
        .filter(|(i, values)| {
            verdict(m, &subsets, &row_of(*i as i64, values.clone()), 1.0).is_some_and(|v| v.flagged)
        })
        .count();
    flagged as f64 / 200_000.0
}

/// A copula over six features `a` to `f`, none optional or floored, at one flag per 720 rows.
fn six_fit(rows: &[Vec<f64>], directed: Directed<'_>) -> Copula {
    let names = ["a", "b", "c", "d", "e", "f"];
    Copula::fit(&names, vec![None; 6], rows, &[], 1.0 / 720.0, &[], directed)
}

#[test]
fn one_feature_far_off_alone_is_flagged_by_its_conditional_surprise() {
    // Six independent features: one at 4.2 sd and the rest ordinary gives a d² below its
    // threshold (about 24 at 1/720), but a conditional surprise beyond its own (about 3.8).
    let mut seed = 5;
    let rows = independent_rows(200_000, &mut seed);
    let m = six_fit(&rows, Directed::default());
    let t = &m.thresholds[0];
    assert!(t.d2 > 20.0 && t.conditional > 3.4 && t.conditional < 4.2, "{t:?}");
    let row = row_of(0, vec![4.2, 0.3, -0.2, 0.1, 0.0, 0.4]);
    let v = verdict(&m, &m.subsets(), &row, 1.0).unwrap();
    assert!(v.flagged && v.drivers[0].feature == "a", "{v:?}");
    // On fresh rows of the same law, the joint thresholds flag about the stated rate.
    let rate = flag_rate(&m, &mut seed);
    assert!((rate * 720.0 - 1.0).abs() < 0.25, "{rate}");
}

#[test]
fn a_shift_along_a_direction_is_flagged_by_its_statistic_at_the_stated_rate() {
    // Six independent features and one direction over the third and fifth. A row 2.6 sd out on
    // both and ordinary elsewhere: `d²` 13.5 (threshold about 24 at 1/720) and a conditional
    // surprise of 2.6 (about 3.8) miss it; along the direction it lies 3.7 sd out, beyond the
    // one-sided threshold (about 3.2).
    let mut seed = 9;
    let rows = independent_rows(200_000, &mut seed);
    let direction = Direction {
        name: "flow".into(),
        weights: vec![0.0, 0.0, 1.0, 0.0, 1.0, 0.0],
        hours: 1,
    };
    let plain = six_fit(&rows, Directed::default());
    let m = six_fit(&rows, Directed::new(vec![direction]));
    let t = &m.thresholds[0];
    assert_eq!(t.directed.len(), 1);
    assert!(t.directed[0] > 2.9 && t.directed[0] < 3.6, "{t:?}");
    // Sharing the tail with a third statistic raises the other two thresholds.
    assert!(t.d2 > plain.thresholds[0].d2 && t.conditional > plain.thresholds[0].conditional);
    let along = row_of(0, vec![0.1, -0.2, 2.6, 0.0, 2.6, 0.3]);
    assert!(!verdict(&plain, &plain.subsets(), &along, 1.0).unwrap().flagged);
    let v = verdict(&m, &m.subsets(), &along, 1.0).unwrap();
    assert!(v.flagged, "{v:?}");
    let named: Vec<&str> = v.drivers.iter().map(|d| d.feature.as_str()).collect();
    assert_eq!(named, ["c", "e"], "{v:?}");
    assert_eq!(v.pattern.as_deref(), Some("flow"));
    // One-sided: the opposite way is ordinary.
    let against = row_of(0, vec![0.1, -0.2, -2.6, 0.0, -2.6, 0.3]);
    assert!(!verdict(&m, &m.subsets(), &against, 1.0).unwrap().flagged);
    // On fresh rows of the same law, the three thresholds together flag about the stated rate.
    let rate = flag_rate(&m, &mut seed);
    assert!((rate * 720.0 - 1.0).abs() < 0.25, "{rate}");
    // Written and read back, the direction and its threshold hold.
    let back: Copula = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(back, m);
    // A model without directions writes neither field (detectors fitted before read the same).
    let text = serde_json::to_string(&plain).unwrap();
    assert!(!text.contains("directions") && !text.contains("directed"));
}

/// The verdicts on `rows`, taken as one market's consecutive hours, each reading the
/// `lookback` hours before it.
fn chain_verdicts(m: &Copula, rows: &[Row], lookback: usize) -> Vec<Verdict> {
    let subsets = m.subsets();
    let zs: Vec<Vec<f64>> = rows.iter().map(|r| m.normal_scores(&r.values)).collect();
    (0..rows.len())
        .filter_map(|i| {
            let earlier: Vec<Hour<'_>> = (1..=lookback.min(i))
                .map(|k| Hour {
                    row: &rows[i - k],
                    z: &zs[i - k],
                })
                .collect();
            verdict_after(
                m,
                &subsets,
                Hour {
                    row: &rows[i],
                    z: &zs[i],
                },
                &earlier.iter().copied(),
                1.0,
            )
        })
        .collect()
}

#[test]
fn a_pattern_spread_over_hours_is_found_by_a_direction_over_them_at_the_stated_rate() {
    // Six independent features, fitted as one market's consecutive hours, and one direction
    // over the third and fifth judged over four hours. Four hours each 1.4 sd out on both: each
    // hour's projection is 2.0, under the one-hour threshold (about 3.2), so `d²`, the
    // conditional surprise and the direction on one hour all miss every hour; summed over the
    // four it is 4.0 sd, beyond the four-hour threshold (about the same).
    let mut seed = 13;
    let rows = independent_rows(200_000, &mut seed);
    let earlier: Vec<Option<usize>> = (0..rows.len()).map(|i| i.checked_sub(1)).collect();
    let fit = |hours| {
        let flow = Direction {
            name: "flow".into(),
            weights: vec![0.0, 0.0, 1.0, 0.0, 1.0, 0.0],
            hours,
        };
        six_fit(
            &rows,
            Directed {
                directions: vec![flow],
                earlier: &earlier,
            },
        )
    };
    let (one, four) = (fit(1), fit(4));
    assert_eq!((one.lookback_hours(), four.lookback_hours()), (0, 3));
    let t = &four.thresholds[0];
    assert!(t.directed[0] > 2.9 && t.directed[0] < 3.6, "{t:?}");
    // Ordinary hours, then the pattern's four, then ordinary again.
    let mut chain: Vec<Row> = (0..8)
        .map(|i| row_of(i, vec![0.1, -0.2, 0.0, 0.3, 0.0, -0.1]))
        .collect();
    for row in &mut chain[3..7] {
        row.values[2] = 1.4;
        row.values[4] = 1.4;
    }
    assert!(chain_verdicts(&one, &chain, 0).iter().all(|v| !v.flagged));
    let v = chain_verdicts(&four, &chain, 3);
    let flagged: Vec<i64> = v.iter().filter(|v| v.flagged).map(|v| v.time_ms).collect();
    assert_eq!(flagged, [6], "{v:?}");
    let last = &v[6];
    assert_eq!(last.pattern.as_deref(), Some("flow"));
    // Its drivers are the pattern's features over its hours, the hours before named as such.
    assert_eq!(last.drivers.len(), MAX_DRIVERS);
    assert!(
        last.drivers
            .iter()
            .all(|d| ["c", "e"].contains(&d.feature.as_str()))
    );
    assert!(
        last.drivers
            .iter()
            .any(|d| d.description.starts_with("1 h before: ") || d.description.starts_with("2 h before: ")),
        "{:?}",
        last.drivers
    );
    // The hours alone, without the ones before them, are ordinary.
    assert!(!verdict(&four, &four.subsets(), &chain[6], 1.0).unwrap().flagged);
    // On fresh consecutive hours of the same law, the thresholds flag about the stated rate.
    let fresh: Vec<Row> = independent_rows(200_000, &mut seed)
        .into_iter()
        .enumerate()
        .map(|(i, values)| row_of(i as i64, values))
        .collect();
    let rate = chain_verdicts(&four, &fresh, 3)
        .iter()
        .filter(|v| v.flagged)
        .count() as f64
        / 200_000.0;
    assert!((rate * 720.0 - 1.0).abs() < 0.25, "{rate}");
    // Written and read back, the hours hold; one hour is not written (older detectors' JSON).
    let back: Copula = serde_json::from_str(&serde_json::to_string(&four).unwrap()).unwrap();
    assert_eq!(back, four);
    assert!(serde_json::to_string(&four).unwrap().contains("\"hours\":4"));
    assert!(!serde_json::to_string(&one).unwrap().contains("hours"));
    // Outside 1 to 24 hours, refused.
    for hours in [0, MAX_DIRECTION_HOURS + 1] {
        let mut bad = four.clone();
        bad.directions[0].hours = hours;
        let err = bad.check_directions().unwrap_err();
        assert!(err.contains("hours"), "{err}");
    }
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
    let m = optional_b_fit(&rows);
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
    let floored = Copula::fit(
        &["a", "b"],
        vec![None, Some(-1.0)],
        &rows,
        &[1],
        0.01,
        &[],
        Directed::default(),
    );
    assert!(floored.normal_scores(&[0.1, f64::NAN])[1].is_nan());
    let v = verdict(&floored, &floored.subsets(), &row, 1.0).unwrap();
    assert!((v.threshold - floored.thresholds[1].d2).abs() < 1e-12);
    // With one feature, d² is z²: the 1% threshold is about 2.576².
    assert!((m.thresholds[1].d2 - 2.576f64.powi(2)).abs() < 0.4);
}

/// `(a, b)`: `a` standard normal, `b` a positive size whose spread grows with `a` (a wick that
/// grows with the volume).
fn spread_with(seed: &mut u64) -> (f64, f64) {
    let n = std_normal();
    let a = n.inverse_cdf(lcg(seed));
    let e = n.inverse_cdf(lcg(seed)).abs();
    (a, e * (1.0 + 2.0 * a.max(0.0)))
}

fn correlation(pairs: &[(f64, f64)]) -> f64 {
    let n = pairs.len() as f64;
    let (ma, mb) = pairs
        .iter()
        .fold((0.0, 0.0), |s, p| (s.0 + p.0 / n, s.1 + p.1 / n));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (a, b) in pairs {
        sab += (a - ma) * (b - mb);
        saa += (a - ma).powi(2);
        sbb += (b - mb).powi(2);
    }
    sab / (saa * sbb).sqrt()
}

#[test]
fn a_conditioned_marginal_reads_a_feature_against_the_other() {
    let mut seed = 13;
    let rows = pairs_of(100_000, &mut seed, spread_with);
    let plain = pair_fit(&rows, &[]);
    let given = pair_fit(&rows, &[(1, 0)]);
    assert!(plain.conditioned.is_empty());
    let c = &given.conditioned[0];
    assert_eq!((c.feature.as_str(), c.on.as_str()), ("b", "a"));
    // Five bins of `a` (edges 0, 1, 2, 3); above 3 sd too few rows (0.13%), merged below.
    assert_eq!(c.centres.len(), 4, "{:?}", c.centres);
    assert!(c.centres.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(c.tables.len(), c.centres.len());
    // On fresh rows the conditioned score of `b` no longer follows `a` (but for what the bins,
    // one sd wide, leave within them); the plain one does.
    let fresh: Vec<(f64, f64)> = (0..50_000).map(|_| spread_with(&mut seed)).collect();
    let pairs = |m: &Copula| -> Vec<(f64, f64)> {
        fresh
            .iter()
            .map(|&(a, b)| {
                let z = m.normal_scores(&[a, b]);
                (z[0], z[1])
            })
            .collect()
    };
    let (r_plain, r_given) = (correlation(&pairs(&plain)), correlation(&pairs(&given)));
    assert!(r_plain > 0.4 && r_given.abs() < 0.08, "{r_plain} {r_given}");
    // A large `b` is surprising where `a` is ordinary, ordinary where `a` is high.
    let b = 3.0;
    let score = |m: &Copula, a: f64| m.normal_scores(&[a, b])[1];
    assert!(score(&given, 0.0) > score(&plain, 0.0) + 0.3);
    assert!(score(&given, 2.5) < score(&plain, 2.5) - 0.5);
    // Continuous across the bins: a small step in `a` moves the score a little.
    for w in c.centres.windows(2) {
        let mid = 0.5 * (w[0] + w[1]);
        let (lo, hi) = (score(&given, mid - 1e-6), score(&given, mid + 1e-6));
        assert!((lo - hi).abs() < 1e-4, "{mid}: {lo} {hi}");
    }
    // Missing `a`: `b` is missing too (no table to read it from), never the plain score.
    assert!(given.normal_scores(&[f64::NAN, b])[1].is_nan());
}

#[test]
fn a_copula_without_conditioned_marginals_writes_the_json_it_always_wrote() {
    // Older detectors' ids are hashes of their JSON: the new field must not appear unless used.
    let mut seed = 17;
    let rows = pairs_of(20_000, &mut seed, spread_with);
    let plain = pair_fit(&rows, &[]);
    let text = serde_json::to_string(&plain).unwrap();
    assert!(!text.contains("conditioned"));
    assert_eq!(serde_json::from_str::<Copula>(&text).unwrap(), plain);
    let given = pair_fit(&rows, &[(1, 0)]);
    let text = serde_json::to_string(&given).unwrap();
    assert!(text.contains("conditioned"));
    assert_eq!(serde_json::from_str::<Copula>(&text).unwrap(), given);
}

/// An optional feature no fit row has, and a fit on fewer than twenty rows, fit without a
/// panic: the set with the feature present gets no threshold (nothing to measure it on), and
/// the short marginal reaches 1 sd.
#[test]
fn a_feature_never_present_and_a_tiny_fit_do_not_panic() {
    let mut seed = 5;
    let rows: Vec<Vec<f64>> = (0..2_000)
        .map(|_| vec![gaussian_pair(&mut seed).0, f64::NAN])
        .collect();
    let m = optional_b_fit(&rows);
    assert!(m.thresholds.len() == 1, "{:?}", m.thresholds);
    assert_eq!(m.thresholds[0].missing, vec!["b".to_owned()]);
    let tiny: Vec<Vec<f64>> = (0..7).map(|i| vec![f64::from(i), f64::from(i % 3)]).collect();
    let m = pair_fit(&tiny, &[]);
    assert!(m.knots.iter().all(|k| !k.is_empty()), "{:?}", m.knots);
}

/// A value a hair beyond a flat end of the table (its first eleven knots equal, as the LP value
/// change of pools whose supply rarely moves) is a hair beyond it in normal scores too, and a
/// larger step lies further out: it was sent to -12 sd whatever its size.
#[test]
fn a_flat_end_extrapolates_at_the_tables_slope() {
    let z_min = -3.5;
    // 141 knots: 11 at 0.0, then rising by 0.001 each.
    let knots: Vec<f64> = (0..141)
        .map(|i| if i <= 10 { 0.0 } else { f64::from(i - 10) * 0.001 })
        .collect();
    let hair = to_normal(-1e-9, &knots, z_min);
    let step = to_normal(-0.01, &knots, z_min);
    let drain = to_normal(-0.5, &knots, z_min);
    assert!(hair < z_min && hair > z_min - 1e-3, "{hair}");
    assert!(step < hair && step > -Z_CAP, "{step}");
    assert!(drain < step, "{drain} vs {step}");
    // Inside the table, and beyond a sloped end, nothing changes.
    assert!((to_normal(0.05, &knots, z_min) - (z_min + 60.0 * 0.05)).abs() < 1e-9);
    let z_end = z_min + 140.0 * 0.05;
    let beyond = to_normal(0.13 + 0.001, &knots, z_min);
    assert!((beyond - (z_end + 0.001 * 0.5 / 0.01)).abs() < 1e-9, "{beyond}");
}
