//! HAR operated as the model is: the baseline of SPEC's "Operated comparison".

use std::collections::BTreeMap;

use rayon::prelude::*;
use volcast_core::forecast::{ForecastRequest, ForecastTable, Origin};
use volcast_core::panel::{PreparedAsset, daily_slots};

use super::MIN_RECALIBRATION_POINTS;

/// HAR operated as the model is (SPEC, "Operated comparison"; the table `har_operated`): at each
/// origin, HAR's forecast multiplied by `mean(RV / F)` of HAR's own completed daily forecasts,
/// pooled over assets, over the trailing `days` days (origins from `days` days before the
/// origin's day whose target windows have ended by then): the model's daily variance correction,
/// measured the same way on the same kind of window. Where the window holds fewer than
/// [`MIN_RECALIBRATION_POINTS`] points, HAR as fitted.
#[must_use]
pub fn har_operated(
    har: &BTreeMap<usize, volcast_core::baselines::har::Har>,
    prepared: &[PreparedAsset],
    request: &ForecastRequest<'_>,
    days: usize,
) -> ForecastTable {
    let assets = request.assets;
    let end_of = |o: &Origin| {
        let hour = assets[o.asset].grid.hour(o.slot);
        hour - hour.rem_euclid(24)
    };
    let mut table = ForecastTable {
        name: "har_operated".into(),
        ..ForecastTable::default()
    };
    let (Some(first), Some(last)) = (
        request.origins.iter().map(end_of).min(),
        request.origins.iter().map(end_of).max(),
    ) else {
        return table;
    };
    let span = 24 * i64::try_from(days).unwrap_or(i64::MAX / 48);
    for &h in request.horizons {
        let Some(model) = har.get(&h) else { continue };
        let forecast = |a: usize, slot: usize| model.forecast(prepared[a].har_regressors(slot));
        // HAR's completed daily forecasts, (origin hour, RV / F).
        let ratios = TrailingRatios::new(
            assets
                .par_iter()
                .enumerate()
                .flat_map_iter(|(a, asset)| {
                    daily_slots(asset, first - span, last).filter_map(move |slot| {
                        let (rv, f) = (prepared[a].target(slot, h), forecast(a, slot));
                        (rv.is_finite() && rv > 0.0 && f.is_finite() && f > 0.0)
                            .then(|| (asset.grid.hour(slot), rv / f))
                    })
                })
                .collect(),
        );
        let horizon = i64::try_from(h).unwrap_or(i64::MAX / 2);
        let variance = request
            .origins
            .par_iter()
            .map(|o| {
                let end = end_of(o);
                let scale = ratios.scale(end - span, end - horizon);
                scale * forecast(o.asset, o.slot)
            })
            .collect();
        table.horizons.insert(
            h,
            volcast_core::forecast::HorizonForecasts {
                variance,
                ..Default::default()
            },
        );
    }
    table
}

/// Completed forecasts' `RV / F` by origin time, pooled over assets: the operated correction's
/// window means (SPEC, "Operated comparison"), shared by `evaluate`'s `har_operated` (times in
/// hours) and the service's validation figures (times in ms).
#[derive(Debug, Clone, Default)]
pub struct TrailingRatios {
    /// (origin time, RV / F), in time order.
    points: Vec<(i64, f64)>,
    /// `prefix[i]`: the sum of the first `i` ratios.
    prefix: Vec<f64>,
}

impl TrailingRatios {
    /// The ratios of `points` (origin time, RV / F), in any order; non-finite or non-positive
    /// ratios are left out.
    #[must_use]
    pub fn new(mut points: Vec<(i64, f64)>) -> Self {
        points.retain(|p| p.1.is_finite() && p.1 > 0.0);
        points.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
        let mut prefix = Vec::with_capacity(points.len() + 1);
        prefix.push(0.0);
        for p in &points {
            prefix.push(prefix.last().copied().unwrap_or(0.0) + p.1);
        }
        Self { points, prefix }
    }

    /// The mean ratio of the forecasts made at times in `[from, to]`, or 1 (no correction)
    /// where they are fewer than [`MIN_RECALIBRATION_POINTS`].
    #[must_use]
    pub fn scale(&self, from: i64, to: i64) -> f64 {
        let lo = self.points.partition_point(|p| p.0 < from);
        let hi = self.points.partition_point(|p| p.0 <= to).max(lo);
        let n = hi - lo;
        if n >= MIN_RECALIBRATION_POINTS {
            (self.prefix[hi] - self.prefix[lo]) / n as f64
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_the_window_mean_with_enough_points_and_one_without() {
        // One ratio a time unit, 2 before time 50 and 4 from it, plus points it must drop.
        let mut points: Vec<(i64, f64)> = (0..100).map(|t| (t, if t < 50 { 2.0 } else { 4.0 })).collect();
        points.extend([(10, f64::NAN), (11, 0.0), (12, -1.0), (13, f64::INFINITY)]);
        let r = TrailingRatios::new(points);
        assert_eq!(r.scale(0, 49), 2.0);
        assert_eq!(r.scale(50, 99), 4.0);
        // Both ends inclusive: 30 points at 2, 30 at 4.
        assert!((r.scale(20, 79) - 3.0).abs() < 1e-12);
        // 19 points: too few, no correction; 20: measured.
        assert_eq!(r.scale(0, 18), 1.0);
        assert_eq!(r.scale(0, 19), 2.0);
        // An empty or reversed window.
        assert_eq!(r.scale(200, 300), 1.0);
        assert_eq!(r.scale(60, 40), 1.0);
    }
}
