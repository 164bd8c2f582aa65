//! The blend of the network with HAR as served, against every fixed weight of the grid chosen in
//! hindsight over a span of days: a diagnostic of the daily weighting rule (`walkforward`), never
//! a correction (it sees the whole span).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{History, best_blend, blend_qlike, qlike};
use crate::artifact::{self, Recalibration};

/// One horizon's blend over a span of days, on the daily origins the [`History`] holds there
/// (finite positive RV and forecasts, HAR's too): mean QLIKE of each forecaster on the same
/// points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BlendHindsight {
    /// Hours.
    pub horizon: usize,
    /// Points scored.
    pub points: usize,
    /// HAR alone (weight 0).
    pub har: f64,
    /// The network as served before the blend: its raw forecast times the variance factor in
    /// force at its origin (weight 1).
    pub network: f64,
    /// The blend as served: the weight in force at each origin.
    pub served: f64,
    /// The fixed weight of the grid with the lowest mean QLIKE over the span, in hindsight.
    pub best_weight: f64,
    /// Its mean QLIKE.
    pub best: f64,
}

impl History {
    /// Per horizon (where HAR was given to [`History::new`]), the blend over the daily origins
    /// from `first_day` to `last_day` (midnights) as served under `corrections` (each day's, as
    /// [`History::operate`] returns them; `stored` where a day has none), against HAR alone, the
    /// network alone and every fixed weight in hindsight; horizons without a point there are
    /// left out. Empty without HAR.
    #[must_use]
    pub fn blend_in_hindsight(
        &self,
        (first_day, last_day): (i64, i64),
        corrections: &BTreeMap<i64, Option<Recalibration>>,
        stored: Option<&Recalibration>,
    ) -> Vec<BlendHindsight> {
        if !self.combine {
            return Vec::new();
        }
        self.horizons
            .iter()
            .map(|p| {
                let lo = p.hours.partition_point(|&x| x < first_day);
                let hi = p.hours.partition_point(|&x| x <= last_day).max(lo);
                // Per point: RV, the network as served before the blend, HAR, the served weight.
                let served: Vec<([f64; 3], f64)> = (lo..hi)
                    .filter_map(|i| {
                        let [rv, f, har] = p.rv_model_har[i];
                        let r = p.in_force(i, corrections, stored);
                        let factor = r.map_or(1.0, |r| r.variance_factor(p.horizon));
                        let w = r
                            .and_then(|r| r.har_weight.get(&p.horizon))
                            .copied()
                            .unwrap_or(1.0);
                        (har.is_finite() && har > 0.0).then_some(([rv, factor * f, har], w))
                    })
                    .collect();
                let points: Vec<[f64; 3]> = served.iter().map(|s| s.0).collect();
                let (best_weight, best) = best_blend(&points, 1.0);
                BlendHindsight {
                    horizon: p.horizon,
                    points: points.len(),
                    har: blend_qlike(&points, 1.0, 0.0),
                    network: blend_qlike(&points, 1.0, 1.0),
                    served: served
                        .iter()
                        .map(|&([rv, f, har], w)| qlike(rv, artifact::blend(f, har, w)))
                        .sum::<f64>()
                        / served.len().max(1) as f64,
                    best_weight,
                    best,
                }
            })
            .filter(|b| b.points > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::HorizonPoints;
    use super::*;

    /// Two days of two points each at 24 h: on day 1 the network is right, on day 2 HAR is.
    fn two_days() -> History {
        let day = |d: i64| 24 * d;
        History {
            levels: vec![0.5],
            horizons: vec![HorizonPoints {
                horizon: 24,
                hours: vec![day(0), day(0), day(1), day(1), day(2)],
                variance_ratio: vec![1.0; 5],
                quantile_ratio: vec![vec![1.0; 5]],
                // RV, raw network, HAR.
                rv_model_har: vec![
                    [2.0, 1.0, 4.0],
                    [2.0, 1.0, 4.0],
                    [8.0, 4.0, 8.0],
                    [8.0, 4.0, 8.0],
                    [1.0, 1.0, 1.0],
                ],
                shortage: Vec::new(),
            }],
            combine: true,
        }
    }

    fn weights(scale: f64, w: f64) -> Recalibration {
        Recalibration {
            variance_scale: BTreeMap::from([(24, scale)]),
            har_weight: BTreeMap::from([(24, w)]),
            ..Recalibration::default()
        }
    }

    #[test]
    fn the_served_blend_is_scored_against_fixed_weights_in_hindsight() {
        let h = two_days();
        // Day 0 serves the network (scale 2: exactly right), day 1 HAR (exactly right).
        let corrections = BTreeMap::from([(0, Some(weights(2.0, 1.0))), (24, Some(weights(2.0, 0.0)))]);
        assert!(
            h.blend_in_hindsight((48 * 24, 50 * 24), &corrections, None)
                .is_empty(),
            "no point there"
        );
        let b = h.blend_in_hindsight((0, 24), &corrections, None);
        assert_eq!(b.len(), 1);
        let b = b[0];
        // Day 2's point is outside the span.
        assert_eq!((b.horizon, b.points), (24, 4));
        // Served: every point exactly right.
        assert!(b.served.abs() < 1e-12);
        // HAR alone: 4 for 2 on day 0 (QLIKE of x = 1/2), right on day 1.
        let miss = 0.5 - 0.5f64.ln() - 1.0;
        assert!((b.har - miss / 2.0).abs() < 1e-12);
        // The network (times 2): right on day 0, exactly right on day 1 too (8 for 8).
        assert!(b.network.abs() < 1e-12);
        assert_eq!(b.best_weight, 1.0);
        assert!(b.best.abs() < 1e-12);
    }

    #[test]
    fn a_day_without_corrections_serves_the_stored_ones_and_no_har_means_no_rows() {
        let h = two_days();
        let stored = weights(1.0, 0.5);
        let corrections = BTreeMap::from([(0, None)]);
        let b = h.blend_in_hindsight((0, 0), &corrections, Some(&stored))[0];
        // RV 2, network 1, HAR 4, half and half in logs: 2 exactly.
        assert_eq!(b.points, 2);
        assert!(b.served.abs() < 1e-12);
        assert_eq!(b.best_weight, 0.5);
        let mut without = two_days();
        without.combine = false;
        assert!(without.blend_in_hindsight((0, 24), &corrections, None).is_empty());
    }
}
