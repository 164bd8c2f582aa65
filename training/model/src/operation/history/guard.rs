//! The HAR guard ([`Adaptive::har_guard`](crate::artifact::Adaptive::har_guard)): follow the
//! leader between the daily weighting rule and HAR alone, per horizon, on every forecast
//! completed since the fit end.

use std::collections::BTreeMap;

use super::{History, qlike};
use crate::artifact::{self, Recalibration};

/// Per horizon of a [`History`], the cumulative QLIKE of the forecasts the weighting rule served
/// less HAR alone's, over the forecasts completed after the fit end so far.
#[derive(Debug, Clone)]
pub(super) struct HarGuard {
    excess: Vec<f64>,
}

impl HarGuard {
    /// Nothing completed yet.
    pub(super) fn new(history: &History) -> Self {
        Self {
            excess: vec![0.0; history.horizons.len()],
        }
    }

    /// Adds the forecasts completed in `(day - 24, day]` and after `anchor` (the fit end's
    /// midnight: their outcomes were never trained on), each as the rule served it on its
    /// origin's day (`served`, the days operated so far; `stored` where a day has none): the
    /// network times that day's variance factor, blended with HAR at the rule's weight
    /// ([`Recalibration::rule_weight`], the guard's own choice set aside).
    pub(super) fn advance(
        &mut self,
        history: &History,
        day: i64,
        anchor: i64,
        served: &BTreeMap<i64, Option<Recalibration>>,
        stored: Option<&Recalibration>,
    ) {
        for (p, excess) in history.horizons.iter().zip(&mut self.excess) {
            let h = i64::try_from(p.horizon).unwrap_or(i64::MAX / 2);
            let a = p.hours.partition_point(|&x| x <= (day - 24).max(anchor) - h);
            let b = p.hours.partition_point(|&x| x <= day - h).max(a);
            for i in a..b {
                let [rv, f, har] = p.rv_model_har[i];
                if !(har.is_finite() && har > 0.0) {
                    continue;
                }
                let r = p.in_force(i, served, stored);
                let factor = r.map_or(1.0, |r| r.variance_factor(p.horizon));
                let w = r.map_or(1.0, |r| r.rule_weight(p.horizon));
                *excess += qlike(rv, artifact::blend(factor * f, har, w)) - qlike(rv, har);
            }
        }
    }

    /// Serves HAR alone in `r` at each horizon where the rule's cumulative QLIKE exceeds HAR's
    /// and the rule had weighted the network at all, keeping the rule's weight in
    /// [`Recalibration::har_guarded`].
    pub(super) fn apply(&self, history: &History, r: &mut Recalibration) {
        for (p, &excess) in history.horizons.iter().zip(&self.excess) {
            match r.har_weight.get(&p.horizon).copied() {
                Some(w) if excess > 0.0 && w > 0.0 => {
                    r.har_guarded.insert(p.horizon, w);
                    r.har_weight.insert(p.horizon, 0.0);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Adaptive;
    use crate::operation::history::HorizonPoints;

    /// A network much better than HAR for the first 130 days, then in turns of 40 days useless
    /// (noise) and good again, beside a noisy HAR; the fit end at day 100. The 30-day rule learns
    /// to trust the network in each good turn and pays for it at the start of each bad one.
    fn lagging_network() -> History {
        let mut rng = volcast_core::synth::Rng::new(21);
        let (mut hours, mut rv_model_har) = (Vec::new(), Vec::new());
        for d in 0..360i64 {
            let noise = if d < 130 || ((d - 130) / 40) % 2 == 1 {
                0.1
            } else {
                1.5
            };
            for _ in 0..3 {
                let truth = (rng.normal() * 0.5).exp();
                let rv = truth * (rng.normal() * 0.3).exp();
                hours.push(d * 24);
                rv_model_har.push([
                    rv,
                    truth * (rng.normal() * noise).exp(),
                    truth * (rng.normal() * 0.4).exp(),
                ]);
            }
        }
        let ratio: Vec<f64> = rv_model_har.iter().map(|&[rv, f, _]| rv / f).collect();
        History {
            levels: vec![0.5],
            horizons: vec![HorizonPoints {
                horizon: 24,
                hours,
                variance_ratio: ratio.clone(),
                quantile_ratio: vec![ratio],
                rv_model_har,
                shortage: Vec::new(),
            }],
            combine: true,
        }
    }

    /// Each day the guard serves HAR exactly when the rule's forecasts completed since the fit
    /// end (at their own days' weights and scales) score a higher total QLIKE than HAR's,
    /// computed here by brute force; the rule's weights, scales and quantiles are those of the
    /// run without the guard; both states occur.
    #[test]
    fn the_guard_serves_har_while_the_rule_trails_it_and_never_changes_the_rule() {
        let h = lagging_network();
        let adaptive = |har_guard| Adaptive {
            blend_as_served_at: vec![24],
            har_guard,
            ..Adaptive::default()
        };
        let anchor = 100 * 24;
        let span = (anchor - 24, 359 * 24);
        let guarded = h.operate(span, 30, anchor, Some(&adaptive(true)), None);
        let plain = h.operate(span, 30, anchor, Some(&adaptive(false)), None);
        let p = &h.horizons[0];
        let (mut on, mut off) = (0, 0);
        for (&day, r) in &guarded {
            let r = r.as_ref().unwrap();
            let rule = plain[&day].as_ref().unwrap();
            assert_eq!(r.variance_scale, rule.variance_scale, "{day}");
            assert_eq!(r.quantile_scale, rule.quantile_scale, "{day}");
            assert_eq!(r.rule_weight(24), rule.har_weight[&24], "{day}");
            // Completed after the fit end and by this day: origins in (anchor - 24, day - 24].
            let excess: f64 = (0..p.hours.len())
                .filter(|&i| p.hours[i] > anchor - 24 && p.hours[i] <= day - 24)
                .map(|i| {
                    let [rv, f, har] = p.rv_model_har[i];
                    let served = guarded[&p.hours[i]].as_ref().unwrap();
                    let forecast =
                        artifact::blend(served.variance_factor(24) * f, har, served.rule_weight(24));
                    qlike(rv, forecast) - qlike(rv, har)
                })
                .sum();
            if excess.abs() < 1e-9 {
                continue;
            }
            if excess > 0.0 && rule.har_weight[&24] > 0.0 {
                assert_eq!(r.har_weight[&24], 0.0, "{day}");
                assert_eq!(r.har_guarded[&24], rule.har_weight[&24], "{day}");
                on += 1;
            } else {
                assert_eq!(r.har_weight, rule.har_weight, "{day}");
                assert!(r.har_guarded.is_empty(), "{day}");
                off += usize::from(day > anchor + 24);
            }
        }
        assert!(on >= 10 && off >= 10, "guarded on {on} days, not on {off}");
    }

    /// Without the setting (or without HAR), nothing is guarded.
    #[test]
    fn no_guard_unless_asked() {
        let mut h = lagging_network();
        let plain = h.operate((99 * 24, 359 * 24), 30, 100 * 24, None, None);
        assert!(plain.values().flatten().all(|r| r.har_guarded.is_empty()));
        h.combine = false;
        let adaptive = Adaptive {
            har_guard: true,
            ..Adaptive::default()
        };
        let without_har = h.operate((99 * 24, 359 * 24), 30, 100 * 24, Some(&adaptive), None);
        assert!(
            without_har
                .values()
                .flatten()
                .all(|r| r.har_guarded.is_empty() && r.har_weight.is_empty())
        );
    }
}
