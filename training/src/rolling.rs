//! The model as operated: its corrections ([`Recalibration`]) re-measured every day on the
//! trailing window of completed forecasts.
//!
//! The network's level drifts with the market's regime, so corrections measured once, at the end
//! of training, go stale. The `calibrate --until <day>` job re-measures them on the last
//! [`Recalibration::rolling_days`] days of daily origins whose target windows have ended by that
//! day: everything it uses is observable then. [`DailyRecalibrated`] replays that job at every
//! origin, which is how `evaluate` scores an artifact that declares it; [`History`] is the one
//! place the corrections are measured, by that job and at training alike.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

use volcast_core::forecast::{ForecastError, ForecastRequest, ForecastTable, Forecaster, Origin};
use volcast_core::grid::Asset;
use volcast_core::panel::{PreparedAsset, daily_slots, prepare};
use volcast_core::time::{format_ms, hour_to_ms};
use volcast_model::artifact::ArtifactError;
use volcast_model::artifact::Recalibration;
use volcast_model::inference::{LoadedModel, Prediction};

/// Fewest completed forecasts per horizon for a correction to be measured.
pub const MIN_RECALIBRATION_POINTS: usize = 20;

/// Why an artifact could not be calibrated.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// The artifact could not be read or written.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The model failed.
    #[error(transparent)]
    Forecast(#[from] ForecastError),
    /// Too little data in the calibration window.
    #[error("too little data to calibrate: {0}")]
    TooLittleData(String),
    /// A recalibration window the data cannot give.
    #[error("bad recalibration window: {0}")]
    Window(String),
}

/// Completed raw forecasts of one horizon at daily origins.
#[derive(Debug, Clone, Default)]
struct HorizonPoints {
    horizon: usize,
    /// Origin hour of each point, increasing.
    hours: Vec<i64>,
    /// RV / F per point.
    variance_ratio: Vec<f64>,
    /// RV, the network's F and HAR's H per point (for the blend's weight).
    rv_model_har: Vec<[f64; 3]>,
    /// RV / q per level, then point (NaN where not finite).
    quantile_ratio: Vec<Vec<f64>>,
}

/// Raw (uncorrected) forecasts at daily origins with their realised RV, per horizon: the material
/// the corrections are measured on.
#[derive(Debug, Clone)]
pub struct History {
    levels: Vec<f64>,
    horizons: Vec<HorizonPoints>,
    /// Whether the corrections blend the network with HAR ([`Recalibration::har_weight`]).
    combine: bool,
}

/// The weights of the network against HAR tried (see [`Recalibration::har_weight`]).
const HAR_BLEND_WEIGHTS: [f64; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// The points of each horizon a window holds, as index ranges into [`History`].
type Window = Vec<(usize, usize)>;

impl History {
    /// Collects the daily (00:00 UTC) origins among `origins`, with their raw `predictions` (same
    /// order; for all of `horizons`) and their realised RV, where RV and the forecasts are finite
    /// and positive. With `har`, its forecasts there too, and the corrections measured blend the
    /// network with it ([`Recalibration::har_weight`]).
    #[must_use]
    pub fn new(
        assets: &[Asset],
        prepared: &[PreparedAsset],
        origins: &[Origin],
        predictions: &[Option<Prediction>],
        horizons: &[usize],
        levels: &[f64],
        har: Option<&BTreeMap<usize, volcast_core::baselines::har::Har>>,
    ) -> Self {
        let horizons = horizons
            .iter()
            .enumerate()
            .map(|(j, &h)| {
                let har_h = har.and_then(|m| m.get(&h));
                let mut points: Vec<(i64, f64, Vec<f64>, [f64; 3])> = origins
                    .iter()
                    .zip(predictions)
                    .filter_map(|(o, p)| {
                        let p = p.as_ref()?;
                        let hour = assets[o.asset].grid.hour(o.slot);
                        let rv = prepared[o.asset].target(o.slot, h);
                        let f = p.variance[j];
                        let ok = hour.rem_euclid(24) == 0
                            && rv.is_finite()
                            && rv > 0.0
                            && f.is_finite()
                            && f > 0.0;
                        let hv =
                            har_h.map_or(f64::NAN, |m| m.forecast(prepared[o.asset].har_regressors(o.slot)));
                        ok.then(|| {
                            (
                                hour,
                                rv / f,
                                p.quantiles[j].iter().map(|q| rv / q).collect(),
                                [rv, f, hv],
                            )
                        })
                    })
                    .collect();
                points.sort_by_key(|p| p.0);
                HorizonPoints {
                    horizon: h,
                    hours: points.iter().map(|p| p.0).collect(),
                    variance_ratio: points.iter().map(|p| p.1).collect(),
                    rv_model_har: points.iter().map(|p| p.3).collect(),
                    quantile_ratio: (0..levels.len())
                        .map(|l| {
                            points
                                .iter()
                                .map(|p| p.2.get(l).copied().filter(|r| r.is_finite()).unwrap_or(f64::NAN))
                                .collect()
                        })
                        .collect(),
                }
            })
            .collect();
        Self {
            levels: levels.to_vec(),
            horizons,
            combine: har.is_some(),
        }
    }

    /// The points of the window ending at `end_hour`: origins from `end_hour - 24 days` on whose
    /// target windows end by `end_hour`.
    fn window(&self, end_hour: i64, days: usize) -> Window {
        let from = end_hour - 24 * i64::try_from(days).unwrap_or(i64::MAX / 48);
        self.horizons
            .iter()
            .map(|p| {
                let last = end_hour - i64::try_from(p.horizon).unwrap_or(i64::MAX / 2);
                let lo = p.hours.partition_point(|&h| h < from);
                let hi = p.hours.partition_point(|&h| h <= last).max(lo);
                (lo, hi)
            })
            .collect()
    }

    /// The corrections measured on `window` (see [`Recalibration`]).
    fn measure(&self, window: &Window) -> Result<Recalibration, CalibrateError> {
        let mut out = Recalibration {
            from: String::new(),
            until: String::new(),
            points: BTreeMap::new(),
            variance_scale: BTreeMap::new(),
            quantile_scale: BTreeMap::new(),
            rolling_days: None,
            har_weight: BTreeMap::new(),
        };
        for (p, &(lo, hi)) in self.horizons.iter().zip(window) {
            let n = hi - lo;
            if n < MIN_RECALIBRATION_POINTS {
                return Err(CalibrateError::TooLittleData(format!(
                    "{n} completed daily forecasts at {}h (need {MIN_RECALIBRATION_POINTS})",
                    p.horizon
                )));
            }
            let scale = p.variance_ratio[lo..hi].iter().sum::<f64>() / n as f64;
            if self.combine {
                out.har_weight
                    .insert(p.horizon, best_weight(&p.rv_model_har[lo..hi], scale));
            }
            let quantile_scale = self
                .levels
                .iter()
                .zip(&p.quantile_ratio)
                .map(|(&level, ratios)| {
                    let mut finite: Vec<f64> =
                        ratios[lo..hi].iter().copied().filter(|r| r.is_finite()).collect();
                    quantile_unsorted(&mut finite, level)
                })
                .collect();
            out.points.insert(p.horizon, n);
            out.variance_scale.insert(p.horizon, scale);
            out.quantile_scale.insert(p.horizon, quantile_scale);
        }
        Ok(out)
    }

    /// The corrections the daily job measures at `end_hour` on the trailing `days` days.
    ///
    /// # Errors
    /// [`CalibrateError::TooLittleData`] when a horizon has fewer than
    /// [`MIN_RECALIBRATION_POINTS`] completed forecasts in the window.
    pub fn recalibration(&self, end_hour: i64, days: usize) -> Result<Recalibration, CalibrateError> {
        let mut out = self.measure(&self.window(end_hour, days))?;
        out.from = format_ms(hour_to_ms(
            end_hour - 24 * i64::try_from(days).unwrap_or(i64::MAX / 48),
        ));
        out.until = format_ms(hour_to_ms(end_hour));
        out.rolling_days = Some(days);
        Ok(out)
    }
}

/// The weight of the network (its forecasts times `scale`) against HAR, of
/// [`HAR_BLEND_WEIGHTS`], whose blends have the lowest mean QLIKE on `points` (RV, F, H); the
/// network alone when no blend is finite.
fn best_weight(points: &[[f64; 3]], scale: f64) -> f64 {
    HAR_BLEND_WEIGHTS
        .iter()
        .map(|&w| {
            let qlike = points
                .iter()
                .map(|&[rv, f, hv]| {
                    let x = rv / volcast_model::artifact::blend(scale * f, hv, w);
                    x - x.ln() - 1.0
                })
                .sum::<f64>()
                / points.len().max(1) as f64;
            (w, qlike)
        })
        .filter(|c| c.1.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(1.0, |c| c.0)
}

/// [`volcast_core::drawdown::interpolated_quantile`] of unsorted values (reordered), in linear time.
fn quantile_unsorted(values: &mut [f64], level: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = level.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let (_, &mut below, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let next = above.iter().copied().min_by(f64::total_cmp).unwrap_or(below);
    let frac = pos - lo as f64;
    below + frac * (next - below)
}

/// Raw forecasts of `model` (its stored corrections ignored) at `origins`, for all its horizons.
///
/// # Errors
/// [`ForecastError`] when the model fails.
pub fn raw_predictions(
    model: &LoadedModel,
    assets: &[Asset],
    origins: &[Origin],
    drawdown: volcast_core::forecast::DrawdownQuery,
) -> Result<Vec<Option<Prediction>>, ForecastError> {
    let mut metadata = model.metadata.clone();
    metadata.recalibration = None;
    model.with_metadata(metadata).predictions(&ForecastRequest {
        assets,
        origins,
        horizons: &model.metadata.horizons,
        drawdown,
    })
}

/// A [`LoadedModel`] operated with its corrections re-measured every day at 00:00 UTC on the
/// trailing `days` days: at origin t it applies those measured at the last midnight at or before
/// t. Where a window holds too few completed forecasts, the artifact's stored corrections apply.
#[derive(Debug)]
pub struct DailyRecalibrated<'a> {
    model: &'a LoadedModel,
    days: usize,
}

impl<'a> DailyRecalibrated<'a> {
    /// Operates `model` with a trailing window of `days` days.
    #[must_use]
    pub fn new(model: &'a LoadedModel, days: usize) -> Self {
        Self { model, days }
    }
}

/// `model` as it is meant to be operated: [`DailyRecalibrated`] when its corrections declare
/// [`Recalibration::rolling_days`], else the artifact as stored.
#[must_use]
pub fn operated(model: &LoadedModel) -> Box<dyn Forecaster + '_> {
    match model.metadata.recalibration.as_ref().and_then(|r| r.rolling_days) {
        Some(days) => Box::new(DailyRecalibrated::new(model, days)),
        None => Box::new(FixedModel(model)),
    }
}

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

/// The artifact with its stored corrections, fixed.
#[derive(Debug)]
pub struct FixedModel<'a>(pub &'a LoadedModel);

impl Forecaster for FixedModel<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn forecast(&self, request: &ForecastRequest<'_>) -> Result<ForecastTable, ForecastError> {
        self.0.forecast(request)
    }
}

impl Forecaster for DailyRecalibrated<'_> {
    fn name(&self) -> &str {
        self.model.name()
    }

    fn forecast(&self, request: &ForecastRequest<'_>) -> Result<ForecastTable, ForecastError> {
        self.model.check_horizons(request.horizons)?;
        let assets = request.assets;
        let end_of = |o: &Origin| {
            let hour = assets[o.asset].grid.hour(o.slot);
            hour - hour.rem_euclid(24)
        };
        let (Some(first), Some(last)) = (
            request.origins.iter().map(end_of).min(),
            request.origins.iter().map(end_of).max(),
        ) else {
            return Ok(self.model.table(&[], request));
        };
        // The request's origins, then the daily origins of every window not among them.
        let mut all = request.origins.to_vec();
        let mut seen: std::collections::HashSet<(usize, usize)> =
            all.iter().map(|o| (o.asset, o.slot)).collect();
        let from = first - 24 * i64::try_from(self.days).unwrap_or(i64::MAX / 48);
        for (a, asset) in assets.iter().enumerate() {
            for slot in daily_slots(asset, from, last) {
                if seen.insert((a, slot)) {
                    all.push(Origin { asset: a, slot });
                }
            }
        }
        let raw = raw_predictions(self.model, assets, &all, request.drawdown)?;
        let horizons = &self.model.metadata.horizons;
        let prepared = prepare(assets, horizons);
        let metadata = &self.model.metadata;
        let history = History::new(
            assets,
            &prepared,
            &all,
            &raw,
            horizons,
            &metadata.quantile_levels,
            metadata
                .recalibration
                .as_ref()
                .is_some_and(|r| !r.har_weight.is_empty())
                .then_some(&metadata.har),
        );

        let windows: Vec<Window> = request
            .origins
            .iter()
            .map(|o| history.window(end_of(o), self.days))
            .collect();
        let mut distinct: Vec<&Window> = windows.iter().collect();
        distinct.sort();
        distinct.dedup();
        let measured: HashMap<&Window, Option<Recalibration>> = distinct
            .into_par_iter()
            .map(|w| (w, history.measure(w).ok()))
            .collect();
        let stored = self.model.metadata.recalibration.as_ref();
        let per_origin: Vec<Option<Prediction>> = raw
            .iter()
            .zip(&windows)
            .zip(&all)
            .map(|((p, w), o)| {
                let mut p = p.clone()?;
                if let Some(r) = measured.get(w).and_then(Option::as_ref).or(stored) {
                    for (j, &h) in horizons.iter().enumerate() {
                        r.apply(h, &mut p.variance[j], &mut p.quantiles[j]);
                    }
                    if !r.har_weight.is_empty() {
                        r.blend_har(
                            horizons,
                            &mut p.variance,
                            &metadata.har_at(&prepared[o.asset], o.slot),
                        );
                    }
                }
                Some(p)
            })
            .collect();
        Ok(self.model.table(&per_origin, request))
    }
}

#[cfg(test)]
mod tests {
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
        // Where HAR forecasts are unusable, the network's stand: any weight gives the same.
        let no_har: Vec<[f64; 3]> = (1..50).map(|i| [f64::from(i), f64::from(i), f64::NAN]).collect();
        assert_eq!(best_weight(&no_har, 1.0), 0.0);
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
}
