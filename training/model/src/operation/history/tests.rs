//! The history of completed forecasts and the corrections measured on it.

use super::stack::MIN_STACK_CLASS;
use super::*;
use volcast_core::drawdown::interpolated_quantile;

#[test]
fn quantile_unsorted_matches_sorted_quantile() {
    let values: Vec<f64> = (0..97).map(|i| f64::from((i * 37) % 97) * 0.5 - 3.0).collect();
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    for level in [0.0, 0.05, 0.5, 0.95, 0.99, 1.0] {
        let mut v = values.clone();
        assert!((quantile_unsorted(&mut v, level) - interpolated_quantile(&sorted, level)).abs() < 1e-12);
    }
    assert!(quantile_unsorted(&mut [], 0.5).is_nan());
}

fn history(hours: &[i64], ratio: &[f64]) -> History {
    History {
        levels: vec![0.5],
        horizons: vec![HorizonPoints {
            horizon: 24,
            hours: hours.to_vec(),
            variance_ratio: ratio.to_vec(),
            quantile_ratio: vec![ratio.to_vec()],
            rv_model_har: ratio.iter().map(|&r| [r, 1.0, 1.0]).collect(),
            shortage: Vec::new(),
        }],
        combine: false,
    }
}

/// The weight follows whichever of the network and HAR tracks the realised variance: all
/// network where HAR is noise, all HAR where the network is.
#[test]
fn the_har_weight_follows_the_better_forecaster() {
    let mut rng = volcast_core::synth::Rng::new(7);
    let mut points = |network_right: bool| -> Vec<[f64; 3]> {
        (0..400)
            .map(|_| {
                let truth = (rng.normal() * 0.8 - 8.0).exp();
                let noisy = truth * (rng.normal() * 1.2).exp();
                let rv = truth * (rng.normal() * 0.3).exp();
                if network_right {
                    [rv, truth, noisy]
                } else {
                    [rv, noisy, truth]
                }
            })
            .collect()
    };
    assert!(best_weight(&points(true), 1.0) >= 0.9);
    assert!(best_weight(&points(false), 1.0) <= 0.1);
    // Where no HAR forecast is usable, any weight scores the same: the network alone is kept
    // (the first weight tried, 0, would serve HAR alone the next day).
    let no_har: Vec<[f64; 3]> = (1..50).map(|i| [f64::from(i), f64::from(i), f64::NAN]).collect();
    assert_eq!(best_weight(&no_har, 1.0), 1.0);
    assert_eq!(best_blend(&no_har, 1.0).1, 0.0, "each forecast equals its RV");
}

/// Weighed as served, each day's weight is the best on the window's forecasts times the
/// scale served at their origins, which lags a network whose level drifts: its weight then
/// differs from the one chosen on the window re-scaled in sample.
#[test]
fn weights_as_served_use_the_scale_in_force_at_each_origin() {
    let mut rng = volcast_core::synth::Rng::new(11);
    let hours: Vec<i64> = (0..200).map(|d| d * 24).collect();
    // The network's raw level drifts away from the truth; HAR is unbiased but noisy.
    let rv_model_har: Vec<[f64; 3]> = (0..200)
        .map(|d| {
            let rv = (rng.normal() * 0.3).exp();
            [rv, (-0.02 * f64::from(d)).exp(), rv * (rng.normal() * 0.6).exp()]
        })
        .collect();
    let ratio: Vec<f64> = rv_model_har.iter().map(|&[rv, f, _]| rv / f).collect();
    let mut h = history(&hours, &ratio);
    h.horizons[0].rv_model_har.clone_from(&rv_model_har);
    h.combine = true;
    let adaptive = |blend_as_served| Adaptive {
        blend_as_served,
        ..Adaptive::default()
    };
    let served = h.operate((40 * 24, 199 * 24), 30, 0, Some(&adaptive(true)), None);
    let refit = h.operate((40 * 24, 199 * 24), 30, 0, Some(&adaptive(false)), None);
    let mut differ = 0;
    for day in (80..200).map(|d| d * 24) {
        let window = h.window(day, 30)[0];
        let points: Vec<[f64; 3]> = (window.0..window.1)
            .map(|i| {
                let origin = hours[i];
                let scale = served[&origin].as_ref().unwrap().variance_scale[&24];
                let [rv, f, har] = rv_model_har[i];
                [rv, scale * f, har]
            })
            .collect();
        let got = served[&day].as_ref().unwrap();
        assert_eq!(got.har_weight[&24], best_weight(&points, 1.0), "{day}");
        // Everything else is the daily job's.
        let same = refit[&day].as_ref().unwrap();
        assert_eq!(got.variance_scale, same.variance_scale);
        assert_eq!(got.quantile_scale, same.quantile_scale);
        differ += usize::from(got.har_weight != same.har_weight);
    }
    assert!(differ > 20, "{differ}");
    // Listed horizons only: the 24 h weights as served when 24 is listed, the daily job's when not.
    let at = |horizons: Vec<usize>| Adaptive {
        blend_as_served_at: horizons,
        ..adaptive(false)
    };
    let listed = h.operate((40 * 24, 199 * 24), 30, 0, Some(&at(vec![24])), None);
    let other = h.operate((40 * 24, 199 * 24), 30, 0, Some(&at(vec![168])), None);
    for (day, r) in &refit {
        let weights = |m: &BTreeMap<i64, Option<Recalibration>>| m[day].as_ref().unwrap().har_weight.clone();
        assert_eq!(weights(&listed), weights(&served), "{day}");
        assert_eq!(weights(&other), r.as_ref().unwrap().har_weight, "{day}");
    }
}

/// A combining history of `days` daily 24 h forecasts (hours `d * 24`): the network's level
/// off by `bias.0` and `bias.1` in turn, flipping every `flip` days; HAR unbiased with a log
/// noise of `har_noise`. With the hours and each point's (RV, network, HAR).
fn flipping_bias(
    days: i64,
    seed: u64,
    flip: i64,
    bias: (f64, f64),
    har_noise: f64,
) -> (History, Vec<i64>, Vec<[f64; 3]>) {
    let mut rng = volcast_core::synth::Rng::new(seed);
    let hours: Vec<i64> = (0..days).map(|d| d * 24).collect();
    let rv_model_har: Vec<[f64; 3]> = (0..days)
        .map(|d| {
            let truth = (rng.normal() * 0.5).exp();
            let rv = truth * (rng.normal() * 0.3).exp();
            let b = if (d / flip) % 2 == 0 { bias.0 } else { bias.1 };
            [rv, truth * b.exp(), truth * (rng.normal() * har_noise).exp()]
        })
        .collect();
    let ratio: Vec<f64> = rv_model_har.iter().map(|&[rv, f, _]| rv / f).collect();
    let mut h = history(&hours, &ratio);
    h.horizons[0].rv_model_har.clone_from(&rv_model_har);
    h.combine = true;
    (h, hours, rv_model_har)
}

/// With the weight's window growing since the fit end (`blend_window_max_days`), each day's
/// weight is the best on the forecasts as served of the trailing clamp(days since the anchor,
/// 30, 90) days: the same as without it for the first 30 days, then on the longer window; the
/// corrections keep their 30 days.
#[test]
fn the_weight_s_window_grows_from_the_anchor_up_to_its_cap() {
    let days = 260;
    let (h, hours, rv_model_har) = flipping_bias(days, 17, 25, (0.5, -0.4), 0.7);
    let anchor = 60 * 24;
    let adaptive = |max| Adaptive {
        blend_as_served_at: vec![24],
        blend_window_max_days: max,
        ..Adaptive::default()
    };
    let span = (20 * 24, (days - 1) * 24);
    let grown = h.operate(span, 30, anchor, Some(&adaptive(Some(90))), None);
    let fixed = h.operate(span, 30, anchor, Some(&adaptive(None)), None);
    let mut differ = 0;
    for day in (50..days).map(|d| d * 24) {
        let since = (day - anchor) / 24;
        let window_days = usize::try_from(since.clamp(30, 90)).unwrap();
        assert_eq!(adaptive(Some(90)).blend_window_days(30, day, anchor), window_days);
        let window = h.window(day, window_days)[0];
        let points: Vec<[f64; 3]> = (window.0..window.1)
            .map(|i| {
                let scale = grown[&hours[i]].as_ref().unwrap().variance_scale[&24];
                let [rv, f, har] = rv_model_har[i];
                [rv, scale * f, har]
            })
            .collect();
        let (got, same) = (grown[&day].as_ref().unwrap(), fixed[&day].as_ref().unwrap());
        assert_eq!(got.har_weight[&24], best_weight(&points, 1.0), "{day}");
        assert_eq!(got.variance_scale, same.variance_scale);
        assert_eq!(got.quantile_scale, same.quantile_scale);
        assert_eq!(got.rolling_days, Some(30));
        if since <= 30 {
            assert_eq!(got.har_weight, same.har_weight, "{day}: within the first window");
        } else {
            differ += usize::from(got.har_weight != same.har_weight);
        }
    }
    assert!(differ > 10, "{differ}");
    // A cap below the corrections' window changes nothing.
    assert_eq!(adaptive(Some(10)).blend_window_days(30, 200 * 24, anchor), 30);
}

/// With the power of the scale chosen as served, each day's (power, weight) is the pair whose
/// blends score the lowest QLIKE on the window's forecasts, each at the scale in force at its
/// origin raised to that power; the scales and quantiles stay the daily job's, and without the
/// setting no power is written (the whole scale).
#[test]
fn the_scale_power_is_chosen_with_the_weight_as_served() {
    let days = 300;
    // The network's level is off by a bias that flips every 45 days, so a trailing 30-day scale
    // sometimes corrects it and sometimes, just after a flip, makes it worse; HAR is unbiased
    // but noisy.
    let (h, hours, rv_model_har) = flipping_bias(days, 13, 45, (0.7, -0.7), 0.8);
    let adaptive = |shrink_as_served| Adaptive {
        blend_as_served_at: vec![24],
        shrink_as_served,
        ..Adaptive::default()
    };
    let span = (40 * 24, (days - 1) * 24);
    let shrunk = h.operate(span, 30, 0, Some(&adaptive(true)), None);
    let whole = h.operate(span, 30, 0, Some(&adaptive(false)), None);
    let mut powers = std::collections::BTreeSet::new();
    for day in (80..days).map(|d| d * 24) {
        let window = h.window(day, 30)[0];
        // The best weight and its QLIKE at power `s`, each forecast at its origin's scale^s.
        let at = |s: f64| {
            let points: Vec<[f64; 3]> = (window.0..window.1)
                .map(|i| {
                    let scale = shrunk[&hours[i]].as_ref().unwrap().variance_scale[&24];
                    let [rv, f, har] = rv_model_har[i];
                    [rv, scale.powf(s) * f, har]
                })
                .collect();
            best_blend(&points, 1.0)
        };
        let got = shrunk[&day].as_ref().unwrap();
        let (s, w) = (got.variance_power[&24], got.har_weight[&24]);
        assert_eq!(w, at(s).0, "{day}: not the best weight at power {s}");
        for other in SCALE_POWERS {
            assert!(
                at(s).1 <= at(other).1,
                "{day}: power {s} scores worse than {other}"
            );
        }
        powers.insert(s.to_bits());
        // Everything else is the daily job's; without the setting, the whole scale.
        let same = whole[&day].as_ref().unwrap();
        assert_eq!(got.variance_scale, same.variance_scale);
        assert_eq!(got.quantile_scale, same.quantile_scale);
        assert!(same.variance_power.is_empty());
    }
    assert!(powers.len() >= 2, "one power chosen every day: {powers:?}");
}

/// With fixed levels, the daily operation measures exactly what the daily job measures on
/// each day's window.
#[test]
fn operating_with_fixed_levels_is_the_daily_job_every_day() {
    let hours: Vec<i64> = (0..60).map(|d| d * 24).collect();
    let ratio: Vec<f64> = (0..60).map(|d| f64::from(d % 7) + 1.0).collect();
    let h = history(&hours, &ratio);
    let op = h.operate((20 * 24, 59 * 24), 30, 0, None, None);
    assert_eq!(op.len(), 40);
    for (&day, r) in &op {
        assert_eq!(
            r.as_ref().ok_or(()),
            h.recalibration(day, 30).as_ref().map_err(|_| ()),
            "{day}"
        );
    }
}

/// RV drifting up faster than a trailing window follows: the window's median covers less
/// than half the outcomes; the adaptive level brings the coverage back to a half.
#[test]
fn the_adaptive_level_restores_coverage_under_drift() {
    let mut rng = volcast_core::synth::Rng::new(5);
    let (mut hours, mut ratio) = (Vec::new(), Vec::new());
    for d in 0..400i64 {
        for _ in 0..50 {
            hours.push(d * 24);
            ratio.push((rng.normal() + 0.01 * d as f64).exp());
        }
    }
    let h = history(&hours, &ratio);
    let coverage = |step: f64| {
        let adaptive = Adaptive {
            quantile_step: step,
            ..Adaptive::default()
        };
        let op = h.operate((0, 399 * 24), 30, 100 * 24, Some(&adaptive), None);
        let late: Vec<bool> = hours
            .iter()
            .zip(&ratio)
            .filter(|(hour, _)| **hour >= 200 * 24)
            .map(|(hour, r)| *r <= op[hour].as_ref().unwrap().quantile_scale[&24][0])
            .collect();
        late.iter().filter(|&&c| c).count() as f64 / late.len() as f64
    };
    let fixed = coverage(0.0);
    let adapted = coverage(0.002);
    assert!(fixed < 0.46, "{fixed}");
    assert!((adapted - 0.5).abs() < 0.02, "{adapted}");
}

#[test]
fn a_window_holds_only_forecasts_completed_by_its_end() {
    let hours: Vec<i64> = (0..60).map(|d| d * 24).collect();
    let ratio: Vec<f64> = (0..60).map(f64::from).collect();
    let h = history(&hours, &ratio);
    // Window ending at day 50 over 30 days: origins of days 20..=49 (day 50's 24 h target
    // ends after the window's end).
    assert_eq!(h.window(50 * 24, 30), vec![(20, 50)]);
    let r = h.recalibration(50 * 24, 30).unwrap();
    assert_eq!(r.points[&24], 30);
    assert!((r.variance_scale[&24] - 34.5).abs() < 1e-12);
    assert!((r.quantile_scale[&24][0] - 34.5).abs() < 1e-12);
    assert_eq!(r.rolling_days, Some(30));
    // Too few completed forecasts: an error, not a guess.
    assert!(matches!(
        h.recalibration(10 * 24, 5),
        Err(CalibrateError::TooLittleData(_))
    ));
}

/// Shortage points drawn from a known stack: logit p = -1 + 0.5 logit(p_net) + 1.5 ln(score).
fn stacked_points(n: usize, seed: u64, first_hour: i64) -> Vec<ShortagePoint> {
    let mut rng = volcast_core::synth::Rng::new(seed);
    (0..n)
        .map(|i| {
            let x = [rng.normal() * 1.5 - 1.0, rng.normal() * 0.7];
            let p = 1.0 / (1.0 + (-(-1.0 + 0.5 * x[0] + 1.5 * x[1])).exp());
            let u = (i as f64 * 0.618_033_988_749_895) % 1.0;
            ShortagePoint {
                hour: first_hour + 24 * i as i64,
                x,
                label: u < p,
            }
        })
        .collect()
}

#[test]
fn the_shortage_stack_recovers_a_known_logistic_map_and_needs_both_classes() {
    let k = fit_stack(&stacked_points(20_000, 3, 0)).unwrap();
    for (got, want) in k.iter().zip([-1.0, 0.5, 1.5]) {
        assert!((got - want).abs() < 0.08, "{k:?}");
    }
    // Too few shortages (or non-shortages): no stack.
    let mut few = stacked_points(2_000, 4, 0);
    let mut positives = 0;
    for p in &mut few {
        positives += usize::from(p.label);
        p.label &= positives < MIN_STACK_CLASS;
    }
    assert!(fit_stack(&few).is_none());
    // Separable classes: the ridge keeps it finite.
    let separable: Vec<ShortagePoint> = (0..200)
        .map(|i| ShortagePoint {
            hour: i,
            x: [f64::from(i32::try_from(i).unwrap()) - 100.0, 0.0],
            label: i >= 100,
        })
        .collect();
    let k = fit_stack(&separable).unwrap();
    assert!(k.iter().all(|x| x.is_finite()) && k[1] > 1.0, "{k:?}");
}

/// The stack of a day is fitted on the window's completed origins only: an origin whose label
/// window ends after the midnight is not used, so a day's stack cannot see its own future.
#[test]
fn the_daily_stack_uses_completed_origins_of_the_window_only() {
    let mut h = history(&[], &[]);
    // 120 days of points from day 0, then 100 days whose labels are the opposite of the map.
    let mut points = stacked_points(120, 5, 0);
    let mut flipped = stacked_points(100, 6, 120 * 24);
    for p in &mut flipped {
        p.label = !p.label;
    }
    points.extend(flipped);
    h.horizons[0].shortage = points.clone();
    // At day 144 the window holds the origins of days 24 to 143 (day 143's 24 h label ends at
    // the midnight itself): fitted on exactly those, not on day 144's.
    let day = 144 * 24;
    let got = h.shortage_stack(day, 120);
    assert_eq!(got.get(&24), Some(&fit_stack(&points[24..144]).unwrap()));
    assert_ne!(got.get(&24), Some(&fit_stack(&points[24..145]).unwrap()));
    // Too few points in the window: no stack that day.
    assert!(h.shortage_stack(30 * 24, 10).is_empty());
}
