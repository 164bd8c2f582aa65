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
        // HAR's completed daily forecasts, (origin hour, RV / F), in time order.
        let mut points: Vec<(i64, f64)> = assets
            .par_iter()
            .enumerate()
            .flat_map_iter(|(a, asset)| {
                daily_slots(asset, first - span, last).filter_map(move |slot| {
                    let (rv, f) = (prepared[a].target(slot, h), forecast(a, slot));
                    (rv.is_finite() && rv > 0.0 && f.is_finite() && f > 0.0)
                        .then(|| (asset.grid.hour(slot), rv / f))
                })
            })
            .collect();
        points.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
        let mut prefix = Vec::with_capacity(points.len() + 1);
        prefix.push(0.0);
        for p in &points {
            prefix.push(prefix.last().copied().unwrap_or(0.0) + p.1);
        }
        let horizon = i64::try_from(h).unwrap_or(i64::MAX / 2);
        let variance = request
            .origins
            .par_iter()
            .map(|o| {
                let end = end_of(o);
                let lo = points.partition_point(|p| p.0 < end - span);
                let hi = points.partition_point(|p| p.0 <= end - horizon).max(lo);
                let n = hi - lo;
                let scale = if n >= MIN_RECALIBRATION_POINTS {
                    (prefix[hi] - prefix[lo]) / n as f64
                } else {
                    1.0
                };
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
