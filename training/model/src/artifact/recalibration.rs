//! The corrections an artifact carries for the network's outputs: level and quantile scales, the
//! weight of HAR in the served blend, and the adaptive-calibration state, measured at training or
//! re-measured by the daily job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Corrections of the network's level and quantiles, measured on the daily origins of a window of
/// completed forecasts (at training, the early-stopping holdout: the last days of the fit period,
/// which a network refit through the holdout, the default `refit_through_holdout`, was trained
/// on, so those first corrections are measured in sample; the daily job's replace them with out
/// of sample ones as the trailing window moves past the fit end): per horizon, the variance
/// forecast is multiplied by `mean(RV / F)` (the scale that minimises QLIKE there), and each RV
/// quantile by the scale that gives it its nominal coverage there. With [`Self::rolling_days`] the model is operated with these corrections
/// re-measured every day on the trailing window (`calibrate --until`, see
/// `volcast_training::rolling`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recalibration {
    /// First origin used, RFC 3339.
    pub from: String,
    /// Last hour a target window reached, RFC 3339.
    pub until: String,
    /// Points per horizon.
    pub points: BTreeMap<usize, usize>,
    /// Variance scale per horizon.
    pub variance_scale: BTreeMap<usize, f64>,
    /// Scale per horizon and quantile level, in the artifact's level order.
    pub quantile_scale: BTreeMap<usize, Vec<f64>>,
    /// When set, the corrections are meant to be re-measured every day on the trailing
    /// `rolling_days` days of completed forecasts, and `evaluate` scores the model that way;
    /// when absent (older artifacts), they are fixed at training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_days: Option<usize>,
    /// Per horizon, the weight `w` of the (corrected) network against the artifact's HAR
    /// baseline: the variance served is `exp(w ln F + (1 - w) ln H)`, `w` in 0, 0.1, ..., 1, the
    /// one whose blends had the lowest QLIKE on the window (measured with the scales, daily).
    /// Empty in artifacts made before: the network alone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub har_weight: BTreeMap<usize, f64>,
    /// Per horizon, the power `s` the variance scale is applied at: the network's variance is
    /// multiplied by `variance_scale^s`, `s` in 0, 0.5, 1, chosen daily with the HAR weight on the
    /// window's forecasts as served ([`Adaptive::shrink_as_served`]). Absent horizons (and
    /// artifacts made before): the whole scale, `s = 1`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variance_power: BTreeMap<usize, f64>,
    /// Per horizon where the HAR guard serves HAR alone on this day ([`Adaptive::har_guard`]):
    /// the weight the daily rule had chosen, which [`Self::har_weight`] replaces by 0 because
    /// the rule's forecasts since the fit end have a higher cumulative QLIKE than HAR's. Empty
    /// where the guard is off or passes (and in artifacts made before).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub har_guarded: BTreeMap<usize, f64>,
    /// Per horizon, the logistic stack of the shortage probability `(a, b, c)`: the probability
    /// served is `sigmoid(a + b logit(p) + c ln(clip(score, 1e-3, 1e3)))`, `p` the network's and
    /// `score` SPEC's baseline score `M_H(t) / median`, fitted daily on the window's completed
    /// origins ([`Adaptive::shortage_stack`]). Absent horizons (too few shortages or
    /// non-shortages in the window), origins without a baseline score, and artifacts made
    /// before: the network's probability.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shortage_stack: BTreeMap<usize, [f64; 3]>,
    /// Adaptive calibration: when set, the daily job also moves the levels the quantile scales
    /// and the drawdown quantile are measured at, from the coverage and breaches realised since
    /// the fit end (see [`Adaptive`]). Absent in artifacts made before: nominal levels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<Adaptive>,
}

/// Adaptive conformal inference (Gibbs and Candes, 2021) on the levels behind the RV quantiles and
/// the drawdown quantile. Starting at the fit end at their nominal values, the daily job moves
/// them after every completed forecast by a small step times (target - realised): each RV
/// quantile's level by `quantile_step (level - covered)` (the scale is then the trailing window's
/// quantile of `RV / q` at the moved level), and the drawdown's miscoverage factor (in the risk
/// calibration's windows) as `volcast_core::drawdown::adaptive_factors` says. The state is a
/// function of the data since the fit end only: the daily job and `evaluate`'s replay compute it
/// with the same code. The default adapts nothing (steps of 0, every option off).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Adaptive {
    /// Step of each RV quantile's level per completed forecast (0: fixed levels).
    pub quantile_step: f64,
    /// Step of the drawdown's log miscoverage factor per completed window (0: fixed).
    pub drawdown_step: f64,
    /// The levels the quantile scales were measured at, per horizon, in the artifact's level
    /// order (the state on the recalibration's `until`; nominal at the fit end).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quantile_level: BTreeMap<usize, Vec<f64>>,
    /// Whether the daily weight of the network against HAR is chosen on the window's forecasts
    /// as they were served (each times the variance scale in force at its origin) rather than
    /// all re-scaled by the scale measured on that window ([`crate::operation::History::operate`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blend_as_served: bool,
    /// The horizons whose weight is chosen as served even where [`Self::blend_as_served`] is
    /// false (empty: none). Absent in artifacts made before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blend_as_served_at: Vec<usize>,
    /// At the horizons whose weight is chosen as served, also choose how much of the variance
    /// scale to apply ([`Recalibration::variance_power`]), jointly with the weight, each past
    /// forecast as it would have been served under each power. False (and absent in artifacts
    /// made before): the whole scale.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shrink_as_served: bool,
    /// Whether the daily job also fits the logistic stack of the shortage probability on the
    /// network's and the baseline score's ([`Recalibration::shortage_stack`]). False (and absent
    /// in artifacts made before): the network's probability.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shortage_stack: bool,
    /// Whether the daily job guards the blend with HAR: per horizon, on a day where the
    /// forecasts the weighting rule served since the fit end (each at its own day's weight) have
    /// a higher cumulative QLIKE over their completed outcomes than HAR alone's, it serves HAR
    /// alone ([`Recalibration::har_guarded`]); the rule keeps being scored, so it takes over
    /// again once it leads. False (and absent in artifacts made before): the rule's weight.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub har_guard: bool,
    /// At the horizons whose weight is chosen as served, the weight's window grows with the
    /// history since the fit end: it holds the completed forecasts of the trailing
    /// `clamp(days since the fit end, rolling_days, this)` days, so the first `rolling_days`
    /// days are as without it and a year after the fit end (with 365) it holds a year. The
    /// corrections keep their `rolling_days`. None (and absent in artifacts made before): the
    /// weight's window is the corrections'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blend_window_max_days: Option<usize>,
}

impl Adaptive {
    /// Whether the weight of the network against HAR at `horizon` is chosen on the forecasts as
    /// served ([`Self::blend_as_served`], [`Self::blend_as_served_at`]).
    #[must_use]
    pub fn blends_as_served(&self, horizon: usize) -> bool {
        self.blend_as_served || self.blend_as_served_at.contains(&horizon)
    }

    /// Whether any horizon's weight is chosen as served.
    #[must_use]
    pub fn blends_any_as_served(&self) -> bool {
        self.blend_as_served || !self.blend_as_served_at.is_empty()
    }

    /// Days of the window the weight is chosen on at the midnight `day` ([`Self::blend_window_max_days`]):
    /// `days` (the corrections' window) without the setting, else the days since `anchor` (the
    /// fit end's midnight) held between `days` and the setting.
    #[must_use]
    pub fn blend_window_days(&self, days: usize, day: i64, anchor: i64) -> usize {
        self.blend_window_max_days.map_or(days, |max| {
            let since = usize::try_from((day - anchor).div_euclid(24)).unwrap_or(0);
            since.clamp(days, max.max(days))
        })
    }
}

/// A variance scale applied at power `s` ([`Recalibration::variance_power`]): `scale^s`, and
/// exactly `scale` at `s = 1`, so the whole scale serves the same bits as before powers existed.
#[must_use]
pub fn scale_at_power(scale: f64, s: f64) -> f64 {
    if s == 1.0 { scale } else { scale.powf(s) }
}

/// Bound on the network's probability before its logit is taken: the stack's inputs stay finite.
const PROBABILITY_FLOOR: f64 = 1e-6;

/// The stack's regressors for a network probability `p` and a baseline score `score`:
/// `logit(p)` (p bounded to `[1e-6, 1 - 1e-6]`) and `ln(clip(score, 1e-3, 1e3))`.
#[must_use]
pub fn stack_inputs(p: f64, score: f64) -> [f64; 2] {
    let p = p.clamp(PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR);
    [
        (p / (1.0 - p)).ln(),
        volcast_core::baselines::shortage::log_score(score),
    ]
}

/// The stacked shortage probability with coefficients `(a, b, c)` ([`Recalibration::shortage_stack`]).
#[must_use]
pub fn stacked_probability([a, b, c]: [f64; 3], p: f64, score: f64) -> f64 {
    let [x, y] = stack_inputs(p, score);
    volcast_core::baselines::shortage::sigmoid(a + b * x + c * y)
}

/// `model` and `har` variances blended in logs, weight `w` on the model; the model alone where
/// the HAR forecast is unusable.
#[must_use]
pub fn blend(model: f64, har: f64, w: f64) -> f64 {
    if w >= 1.0 || !(har.is_finite() && har > 0.0 && model > 0.0) {
        model
    } else {
        (w * model.ln() + (1.0 - w) * har.ln()).exp()
    }
}

impl Recalibration {
    /// Blends each horizon's (corrected) `variance` with the artifact's HAR forecast `har`
    /// (same order as `horizons`) by [`Self::har_weight`].
    pub fn blend_har(&self, horizons: &[usize], variance: &mut [f64], har: &[f64]) {
        for ((h, v), &hv) in horizons.iter().zip(variance.iter_mut()).zip(har) {
            if let Some(&w) = self.har_weight.get(h) {
                *v = blend(*v, hv, w);
            }
        }
    }

    /// The weight of the network against HAR that the daily weighting rule chose at `horizon`:
    /// [`Self::har_weight`], or what the HAR guard replaced ([`Self::har_guarded`]); 1 (the
    /// network alone) where none was measured.
    #[must_use]
    pub fn rule_weight(&self, horizon: usize) -> f64 {
        self.har_guarded
            .get(&horizon)
            .or_else(|| self.har_weight.get(&horizon))
            .copied()
            .unwrap_or(1.0)
    }

    /// The multiplier of the network's variance at `horizon`: its scale at its power
    /// ([`Self::variance_power`]); 1 where none was measured.
    #[must_use]
    pub fn variance_factor(&self, horizon: usize) -> f64 {
        let scale = self.variance_scale.get(&horizon).copied().unwrap_or(1.0);
        self.variance_power
            .get(&horizon)
            .map_or(scale, |&s| scale_at_power(scale, s))
    }

    /// Replaces each horizon's network shortage `probability` (same order as `horizons`) by its
    /// stack with the baseline `score` there ([`Self::shortage_stack`]); a horizon without
    /// coefficients, or whose score is not a finite positive number, keeps the network's.
    pub fn stack_shortage(&self, horizons: &[usize], probability: &mut [f64], score: &[f64]) {
        for ((h, p), &s) in horizons.iter().zip(probability.iter_mut()).zip(score) {
            if let (Some(&k), true) = (self.shortage_stack.get(h), s.is_finite() && s > 0.0) {
                *p = stacked_probability(k, *p, s);
            }
        }
    }

    /// Checks that every correction can be served with `levels` quantile levels: variance and
    /// quantile scales finite and positive (one per level), HAR weights and variance powers in
    /// [0, 1], stack coefficients finite. A daily job's artifact that fails this is refused at
    /// load (the server keeps the model it serves) rather than failing every request later.
    ///
    /// # Errors
    /// The first offending field, with its horizon.
    pub fn check(&self, levels: usize) -> Result<(), String> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        if let Some((h, s)) = self.variance_scale.iter().find(|(_, s)| !positive(**s)) {
            return Err(format!("variance_scale at {h}h is {s}: finite and positive"));
        }
        if let Some((h, k)) = self
            .quantile_scale
            .iter()
            .find(|(_, k)| k.len() != levels || !k.iter().all(|s| positive(*s)))
        {
            return Err(format!(
                "quantile_scale at {h}h is {k:?}: one finite, positive scale per level ({levels})"
            ));
        }
        if let Some((h, w)) = self.har_weight.iter().find(|(_, w)| !unit(**w)) {
            return Err(format!("har_weight at {h}h is {w}: in [0, 1]"));
        }
        if let Some((h, w)) = self.har_guarded.iter().find(|(_, w)| !unit(**w)) {
            return Err(format!("har_guarded at {h}h is {w}: in [0, 1]"));
        }
        if let Some((h, s)) = self.variance_power.iter().find(|(_, s)| !unit(**s)) {
            return Err(format!("variance_power at {h}h is {s}: in [0, 1]"));
        }
        if let Some((h, k)) = self
            .shortage_stack
            .iter()
            .find(|(_, k)| !k.iter().all(|x| x.is_finite()))
        {
            return Err(format!("shortage_stack at {h}h is {k:?}: finite coefficients"));
        }
        Ok(())
    }

    /// Applies the corrections to one horizon's variance and quantiles (kept increasing).
    pub fn apply(&self, horizon: usize, variance: &mut f64, quantiles: &mut [f64]) {
        *variance *= self.variance_factor(horizon);
        if let Some(k) = self.quantile_scale.get(&horizon) {
            let mut floor = 0.0f64;
            for (q, s) in quantiles.iter_mut().zip(k) {
                *q = (*q * s).max(floor);
                floor = *q;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recalibration_scales_and_keeps_quantiles_increasing() {
        let r = Recalibration {
            variance_scale: BTreeMap::from([(4, 1.5)]),
            quantile_scale: BTreeMap::from([(4, vec![2.0, 1.0, 0.5])]),
            har_weight: BTreeMap::from([(4, 0.5)]),
            ..Recalibration::default()
        };
        let (mut v, mut q) = (2.0, [1.0, 1.5, 4.0]);
        r.apply(4, &mut v, &mut q);
        assert_eq!(v, 3.0);
        // 2.0, then 1.5 raised to 2.0 (monotone), then 2.0.
        assert_eq!(q, [2.0, 2.0, 2.0]);
        // Another horizon: untouched.
        let (mut v, mut q) = (2.0, [1.0, 1.5, 4.0]);
        r.apply(24, &mut v, &mut q);
        assert_eq!((v, q), (2.0, [1.0, 1.5, 4.0]));
        // Blended with HAR in logs at 4 h (weight 0.5: the geometric mean), untouched at 24 h.
        let mut v = [2.0, 2.0];
        r.blend_har(&[4, 24], &mut v, &[8.0, 8.0]);
        assert!((v[0] - 4.0).abs() < 1e-12 && v[1] == 2.0, "{v:?}");
        // An unusable HAR forecast leaves the model's.
        assert_eq!(blend(2.0, f64::NAN, 0.0), 2.0);
        // The variance scale at a power: 2.25^0.5 = 1.5 at 4 h, none of it at power 0; the
        // quantiles keep their own scales.
        let shrunk = |s: f64| Recalibration {
            variance_scale: BTreeMap::from([(4, 2.25)]),
            variance_power: BTreeMap::from([(4, s)]),
            ..r.clone()
        };
        let (mut v, mut q) = (2.0, [1.0, 1.5, 4.0]);
        shrunk(0.5).apply(4, &mut v, &mut q);
        assert!((v - 3.0).abs() < 1e-12 && q == [2.0, 2.0, 2.0], "{v} {q:?}");
        assert_eq!(shrunk(0.0).variance_factor(4), 1.0);
        assert_eq!(shrunk(1.0).variance_factor(4), 2.25);
        assert_eq!(shrunk(0.5).variance_factor(24), 1.0);
    }

    #[test]
    fn the_shortage_stack_maps_the_network_s_logit_and_the_baseline_score() {
        let r = Recalibration {
            // At 4 h: logit p' = -1 + 0.5 logit(p) + 2 ln(score); none at 24 h.
            shortage_stack: BTreeMap::from([(4, [-1.0, 0.5, 2.0])]),
            ..Recalibration::default()
        };
        let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
        // p = 0.2 (logit -ln 4), score e: -1 - 0.5 ln 4 + 2.
        let mut p = [0.2, 0.2];
        r.stack_shortage(&[4, 24], &mut p, &[1f64.exp(), 1f64.exp()]);
        assert!((p[0] - sigmoid(1.0 - 0.5 * 4f64.ln())).abs() < 1e-12, "{p:?}");
        assert_eq!(p[1], 0.2, "no coefficients at 24 h: the network's");
        // No baseline score (or an unusable one): the network's.
        for s in [f64::NAN, 0.0, -1.0] {
            let mut p = [0.2];
            r.stack_shortage(&[4], &mut p, &[s]);
            assert_eq!(p, [0.2]);
        }
        // The identity stack serves the network's probability; extreme inputs stay finite.
        assert!((stacked_probability([0.0, 1.0, 0.0], 0.3, 5.0) - 0.3).abs() < 1e-12);
        assert!(stacked_probability([0.0, 1.0, 1.0], 1.0, 1e9).is_finite());
        assert!(stacked_probability([0.0, 1.0, 1.0], 0.0, 1e-9) > 0.0);
        // Serialised only when fitted: artifacts without it read as before.
        let text = serde_json::to_string(&Recalibration {
            shortage_stack: BTreeMap::new(),
            ..r.clone()
        })
        .unwrap();
        assert!(!text.contains("shortage_stack"), "{text}");
        let back: Recalibration = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn corrections_that_cannot_be_served_are_named() {
        let good = Recalibration {
            variance_scale: BTreeMap::from([(4, 1.2)]),
            quantile_scale: BTreeMap::from([(4, vec![0.9, 1.1])]),
            rolling_days: Some(120),
            har_weight: BTreeMap::from([(4, 0.0), (168, 1.0)]),
            variance_power: BTreeMap::from([(168, 0.5)]),
            shortage_stack: BTreeMap::from([(24, [-1.0, 0.9, 0.2])]),
            ..Recalibration::default()
        };
        assert_eq!(good.check(2), Ok(()));
        let bad = |edit: &dyn Fn(&mut Recalibration), word: &str| {
            let mut r = good.clone();
            edit(&mut r);
            let err = r.check(2).unwrap_err();
            assert!(err.contains(word), "{err}");
        };
        bad(
            &|r| {
                r.variance_scale.insert(24, f64::NAN);
            },
            "variance_scale at 24h",
        );
        bad(
            &|r| {
                r.variance_scale.insert(4, 0.0);
            },
            "variance_scale at 4h",
        );
        bad(
            &|r| {
                r.quantile_scale.insert(4, vec![1.0]);
            },
            "one finite, positive scale per level (2)",
        );
        bad(
            &|r| {
                r.quantile_scale.insert(4, vec![1.0, -1.0]);
            },
            "quantile_scale at 4h",
        );
        bad(
            &|r| {
                r.har_weight.insert(24, 1.5);
            },
            "har_weight at 24h",
        );
        bad(
            &|r| {
                r.variance_power.insert(168, f64::NAN);
            },
            "variance_power at 168h",
        );
        bad(
            &|r| {
                r.shortage_stack.insert(4, [0.0, f64::INFINITY, 0.0]);
            },
            "shortage_stack at 4h",
        );
    }
}
