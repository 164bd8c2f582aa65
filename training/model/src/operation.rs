//! The model as operated: its corrections ([`Recalibration`]) re-measured every day on the
//! trailing window of completed forecasts. Here, beside inference, because the service runs the
//! daily job itself ([`refresh_recalibration`]) and `evaluate` replays it: one code for both.
//!
//! The network's level drifts with the market's regime, so corrections measured once, at the end
//! of training, go stale. The `calibrate --until <day>` job re-measures them on the last
//! [`Recalibration::rolling_days`] days of daily origins whose target windows have ended by that
//! day: everything it uses is observable then. [`DailyRecalibrated`] replays that job at every
//! origin, which is how `evaluate` scores an artifact that declares it; [`History`] is the one
//! place the corrections are measured, by that job and at training alike.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rayon::prelude::*;

use crate::artifact::ArtifactError;
use crate::artifact::{self, Adaptive, Recalibration};
use crate::inference::{LoadedModel, Prediction};
use volcast_core::drawdown::{DrawdownCalibration, Fall, VarianceCurve, adaptive_factors};
use volcast_core::forecast::{
    DrawdownQuery, ForecastError, ForecastRequest, ForecastTable, Forecaster, Origin,
};
use volcast_core::grid::Asset;
use volcast_core::panel::{PreparedAsset, daily_slots, prepare};
use volcast_core::policy::{DEFAULT_ALPHA, DEFAULT_TAU};
use volcast_core::time::{format_ms, hour_to_ms};

/// Step of each RV quantile's level per completed forecast in artifacts calibrated from now on
/// ([`Adaptive::quantile_step`]): of 0, 0.0005 and 0.002, the one with the smallest worst
/// coverage gap over the walk-forward folds (README, "Adaptive calibration").
pub const DEFAULT_QUANTILE_STEP: f64 = 0.0005;
/// Step of the drawdown's log miscoverage factor per completed window ([`Adaptive::drawdown_step`]):
/// of 0, 0.0002 and 0.0005, 0 is the one that keeps every fold's breach rate in [0.7%, 1.3%] and
/// the pooled Kupiec p above 0.05 with the highest mean LT (README, "Adaptive calibration"); the
/// mechanism stays available (`--drawdown-step`).
pub const DEFAULT_DRAWDOWN_STEP: f64 = 0.0;

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

    /// The levels as declared, for every horizon.
    fn nominal_levels(&self) -> Vec<Vec<f64>> {
        vec![self.levels.clone(); self.horizons.len()]
    }

    /// The corrections measured on `window` (see [`Recalibration`]), each quantile scale at its
    /// level of `levels` (per horizon, in level order).
    fn measure(&self, window: &Window, levels: &[Vec<f64>]) -> Result<Recalibration, CalibrateError> {
        let mut out = Recalibration {
            from: String::new(),
            until: String::new(),
            points: BTreeMap::new(),
            variance_scale: BTreeMap::new(),
            quantile_scale: BTreeMap::new(),
            rolling_days: None,
            har_weight: BTreeMap::new(),
            adaptive: None,
        };
        for ((p, &(lo, hi)), levels) in self.horizons.iter().zip(window).zip(levels) {
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
            let quantile_scale = levels
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
        let out = self.measure(&self.window(end_hour, days), &self.nominal_levels())?;
        Ok(stamped(out, end_hour, days))
    }

    /// The corrections in force on each day (midnight hours) from `first_day` to `last_day`, as
    /// the daily job measures them on the trailing `days` days (None where a window holds too few
    /// completed forecasts: `stored` then applies). With `adaptive`, each RV quantile's scale is
    /// measured at a level moved by adaptive conformal inference ([`Adaptive`]): nominal up to
    /// `anchor` (the fit end's midnight), then after each forecast completed since, by
    /// `quantile_step (level - covered)`, covered meaning RV at or below the quantile served at
    /// its origin (its scale of that day). For the state to be exact, `first_day` must be at most
    /// the anchor minus the longest horizon.
    #[must_use]
    pub fn operate(
        &self,
        (first_day, last_day): (i64, i64),
        days: usize,
        anchor: i64,
        adaptive: Option<&Adaptive>,
        stored: Option<&Recalibration>,
    ) -> BTreeMap<i64, Option<Recalibration>> {
        let step = adaptive.map_or(0.0, |a| a.quantile_step);
        let mut levels = self.nominal_levels();
        let mut out: BTreeMap<i64, Option<Recalibration>> = BTreeMap::new();
        let mut day = first_day;
        while day <= last_day {
            if step != 0.0 {
                for (p, levels) in self.horizons.iter().zip(&mut levels) {
                    let h = i64::try_from(p.horizon).unwrap_or(i64::MAX / 2);
                    // Forecasts completed in (day - 24, day] and after the anchor.
                    let a = p.hours.partition_point(|&x| x <= (day - 24).max(anchor) - h);
                    let b = p.hours.partition_point(|&x| x <= day - h).max(a);
                    for i in a..b {
                        let origin_day = p.hours[i] - p.hours[i].rem_euclid(24);
                        let served = out.get(&origin_day).and_then(Option::as_ref).or(stored);
                        let scales = served.and_then(|c| c.quantile_scale.get(&p.horizon));
                        for (l, (state, &level)) in levels.iter_mut().zip(&self.levels).enumerate() {
                            let r = p.quantile_ratio[l][i];
                            if r.is_finite() {
                                let scale = scales.and_then(|k| k.get(l)).copied().unwrap_or(1.0);
                                let covered = f64::from(u8::from(r <= scale));
                                *state = (*state + step * (level - covered)).clamp(-0.25, 1.25);
                            }
                        }
                    }
                }
            }
            let measured = self.measure(&self.window(day, days), &levels).ok().map(|r| {
                let mut r = stamped(r, day, days);
                r.adaptive = adaptive.map(|a| Adaptive {
                    quantile_level: self
                        .horizons
                        .iter()
                        .zip(&levels)
                        .map(|(p, l)| (p.horizon, l.clone()))
                        .collect(),
                    ..a.clone()
                });
                r
            });
            out.insert(day, measured);
            day += 24;
        }
        out
    }
}

/// `r` with the window it was measured on: the `days` days before `end_hour`.
fn stamped(mut r: Recalibration, end_hour: i64, days: usize) -> Recalibration {
    r.from = format_ms(hour_to_ms(
        end_hour - 24 * i64::try_from(days).unwrap_or(i64::MAX / 48),
    ));
    r.until = format_ms(hour_to_ms(end_hour));
    r.rolling_days = Some(days);
    r
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
                    let x = rv / artifact::blend(scale * f, hv, w);
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
    drawdown: DrawdownQuery,
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
/// With [`Adaptive`] settings (the artifact's, or [`Self::with_adaptive`]'s), the levels of the
/// quantile scales and of the drawdown quantile move every day from the fit end on
/// ([`History::operate`], [`adaptive_factors`]).
#[derive(Debug)]
pub struct DailyRecalibrated<'a> {
    model: &'a LoadedModel,
    days: usize,
    adaptive: Option<Adaptive>,
}

impl<'a> DailyRecalibrated<'a> {
    /// Operates `model` with a trailing window of `days` days and its declared adaptive settings.
    #[must_use]
    pub fn new(model: &'a LoadedModel, days: usize) -> Self {
        let adaptive = model
            .metadata
            .recalibration
            .as_ref()
            .and_then(|r| r.adaptive.clone());
        Self {
            model,
            days,
            adaptive,
        }
    }

    /// The same with other adaptive settings (None: fixed levels).
    #[must_use]
    pub fn with_adaptive(mut self, adaptive: Option<Adaptive>) -> Self {
        self.adaptive = adaptive;
        self
    }
}

/// The model as operated over a span of days: what was served at each origin and the state of
/// the daily job on each day.
#[derive(Debug)]
pub struct Operation {
    /// The corrections in force on each day (midnight hour); None where the window was too thin
    /// (the artifact's stored corrections applied).
    pub corrections: BTreeMap<i64, Option<Recalibration>>,
    /// The drawdown calibration's adaptive factors in force on each day, one per window of the
    /// risk calibration (empty without adaptive settings or a risk calibration).
    pub factors: BTreeMap<i64, Vec<f64>>,
    /// The served forecasts at the origins asked, in their order.
    pub served: Vec<Option<Prediction>>,
}

/// Midnight (hour) of the day an hour falls in.
fn day_of(hour: i64) -> i64 {
    hour - hour.rem_euclid(24)
}

/// Longest span (hours, whole days) between a forecast's origin and its outcome: the longest of
/// the horizons and of the drawdown windows.
fn longest_outcome(horizons: &[usize]) -> i64 {
    let longest = horizons
        .iter()
        .chain(&volcast_core::drawdown::TAU_GRID)
        .copied()
        .max()
        .unwrap_or(0);
    24 * i64::try_from(longest.div_ceil(24)).unwrap_or(0)
}

impl DailyRecalibrated<'_> {
    /// Operates the model over the days of `origins` and of `(first_day, last_day)` (midnights):
    /// the corrections and adaptive factors of every day in between, and the forecasts served at
    /// `origins`. Raw forecasts are made at every daily origin the windows need.
    ///
    /// # Errors
    /// [`ForecastError`] when the model fails or its fit end is not a time.
    pub fn operate(
        &self,
        assets: &[Asset],
        origins: &[Origin],
        (first_day, last_day): (i64, i64),
    ) -> Result<Operation, ForecastError> {
        let model = self.model;
        let metadata = &model.metadata;
        let fail = |message: String| ForecastError {
            forecaster: metadata.id.clone(),
            message,
        };
        let horizons = &metadata.horizons;
        let anchor = day_of(fit_end_hour(metadata).map_err(|e| fail(e.to_string()))?);
        let days_of = origins.iter().map(|o| day_of(assets[o.asset].grid.hour(o.slot)));
        let first = days_of.clone().min().unwrap_or(first_day).min(first_day);
        let last = days_of.max().unwrap_or(last_day).max(last_day);
        // With adaptive levels, the state on the first day must be exact: start before the first
        // forecast that completes after the anchor.
        let first = match &self.adaptive {
            Some(_) => first.min(anchor - longest_outcome(horizons)),
            None => first,
        };
        // The origins asked, then the daily origins of every window not among them.
        let mut all = origins.to_vec();
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
        let raw = raw_predictions(
            model,
            assets,
            &all,
            DrawdownQuery {
                alpha: DEFAULT_ALPHA,
                tau: DEFAULT_TAU,
            },
        )?;
        let prepared = prepare(assets, horizons);
        let stored = metadata.recalibration.as_ref();
        let history = History::new(
            assets,
            &prepared,
            &all,
            &raw,
            horizons,
            &metadata.quantile_levels,
            stored
                .is_some_and(|r| !r.har_weight.is_empty())
                .then_some(&metadata.har),
        );
        let corrections = history.operate((first, last), self.days, anchor, self.adaptive.as_ref(), stored);
        let served: Vec<Option<Prediction>> = raw
            .into_par_iter()
            .zip(&all)
            .map(|(p, o)| {
                let mut p = p?;
                let day = day_of(assets[o.asset].grid.hour(o.slot));
                if let Some(r) = corrections.get(&day).and_then(Option::as_ref).or(stored) {
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
        let factors = match (&self.adaptive, &metadata.risk) {
            (Some(adaptive), Some(risk)) => {
                let falls = completed_falls(assets, &all, &served, horizons, &risk.model);
                adaptive_factors(
                    &risk.model,
                    &falls,
                    DEFAULT_ALPHA,
                    adaptive.drawdown_step,
                    anchor,
                    (first, last),
                )
            }
            _ => BTreeMap::new(),
        };
        let mut served = served;
        served.truncate(origins.len());
        Ok(Operation {
            corrections,
            factors,
            served,
        })
    }
}

/// Per window of `calibration`, the completed falls at the daily origins among `origins` with a
/// served forecast, in origin order ([`adaptive_factors`]'s input).
fn completed_falls(
    assets: &[Asset],
    origins: &[Origin],
    served: &[Option<Prediction>],
    horizons: &[usize],
    calibration: &DrawdownCalibration,
) -> Vec<Vec<Fall>> {
    calibration
        .windows
        .par_iter()
        .map(|w| {
            let mut falls: Vec<Fall> = origins
                .iter()
                .zip(served)
                .filter_map(|(o, p)| {
                    let grid = &assets[o.asset].grid;
                    let hour = grid.hour(o.slot);
                    if hour.rem_euclid(24) != 0 {
                        return None;
                    }
                    let fall = volcast_core::targets::drawdown(grid, o.slot, w.tau)?;
                    let v = VarianceCurve::new(horizons, &p.as_ref()?.variance).at(w.tau as f64);
                    (fall < 1.0 && v.is_finite() && v > 0.0).then(|| Fall {
                        hour,
                        log_fall: -(1.0 - fall).ln(),
                        scale: v.sqrt(),
                    })
                })
                .collect();
            falls.sort_by_key(|f| f.hour);
            falls
        })
        .collect()
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
        if request.origins.is_empty() {
            return Ok(self.model.table(&[], request));
        }
        let first = request
            .origins
            .iter()
            .map(|o| day_of(assets[o.asset].grid.hour(o.slot)))
            .min()
            .unwrap_or(0);
        let op = self.operate(assets, request.origins, (first, first))?;
        let mut table = self.model.table(&op.served, request);
        // The drawdown at the level moved by the adaptive factors in force at each origin.
        if let (Some(risk), false) = (&self.model.metadata.risk, op.factors.is_empty()) {
            let q = request.drawdown;
            let tau = q.tau as f64;
            let horizons = &self.model.metadata.horizons;
            let per_day: HashMap<i64, DrawdownCalibration> = op
                .factors
                .iter()
                .map(|(&day, f)| (day, risk.model.with_factors(f)))
                .collect();
            table.drawdown = Some(
                request
                    .origins
                    .iter()
                    .zip(&op.served)
                    .map(|(o, p)| {
                        let day = day_of(assets[o.asset].grid.hour(o.slot));
                        match (p, per_day.get(&day)) {
                            (Some(p), Some(c)) => {
                                c.drawdown(VarianceCurve::new(horizons, &p.variance).at(tau), q.alpha, tau)
                            }
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            );
        }
        Ok(table)
    }
}

/// The close hour of the artifact's last fitting candle.
///
/// # Errors
/// [`CalibrateError::TooLittleData`] when the metadata's `fit_until` is not a time.
pub fn fit_end_hour(metadata: &artifact::Metadata) -> Result<i64, CalibrateError> {
    volcast_core::time::parse_time(&metadata.fit_until, volcast_core::time::Bound::Start)
        .map(volcast_core::time::close_hour_of_open_ms)
        .map_err(|e| CalibrateError::TooLittleData(format!("fit_until {}: {e}", metadata.fit_until)))
}

/// Measures the [`Recalibration`] of `model`'s raw outputs (any correction it already carries is
/// ignored) on the daily origins of the last `days` before `end_hour` whose target windows end by
/// then: at training, the early-stopping holdout; in operation, the trailing window of the daily
/// job (see [`crate::rolling`]). The result declares `rolling_days = days`; with `combine`, it
/// also weighs the network against the artifact's HAR ([`Recalibration::har_weight`]).
///
/// # Errors
/// [`CalibrateError`] when the model fails or a horizon has fewer than
/// [`MIN_RECALIBRATION_POINTS`] points.
pub fn recalibrate(
    model: &LoadedModel,
    assets: &[Asset],
    end_hour: i64,
    days: usize,
    combine: bool,
) -> Result<Recalibration, CalibrateError> {
    let from_hour = end_hour - 24 * i64::try_from(days).unwrap_or(i64::MAX / 48);
    let origins: Vec<Origin> = assets
        .iter()
        .enumerate()
        .flat_map(|(a, asset)| {
            daily_slots(asset, from_hour, end_hour).map(move |slot| Origin { asset: a, slot })
        })
        .collect();
    let horizons = &model.metadata.horizons;
    let raw = raw_predictions(
        model,
        assets,
        &origins,
        DrawdownQuery {
            alpha: DEFAULT_ALPHA,
            tau: DEFAULT_TAU,
        },
    )?;
    let prepared = prepare(assets, horizons);
    History::new(
        assets,
        &prepared,
        &origins,
        &raw,
        horizons,
        &model.metadata.quantile_levels,
        combine.then_some(&model.metadata.har),
    )
    .recalibration(end_hour, days)
}

/// The daily job: re-measures the corrections of `model` on the trailing window ending at
/// `end_hour` (its declared [`Recalibration::rolling_days`], else its training holdout) and writes
/// the artifact with them (same weights and risk calibration, a new content id) into `out`;
/// returns its directory.
///
/// # Errors
/// [`CalibrateError::Window`] when `end_hour` is before the fit end or after the candles;
/// [`CalibrateError`] on too few completed forecasts in the window, or on a read, forecast or
/// write failure.
pub fn refresh_recalibration(
    model: &LoadedModel,
    assets: &[Asset],
    end_hour: i64,
    out: &Path,
) -> Result<artifact::Saved, CalibrateError> {
    let fit_end = fit_end_hour(&model.metadata)?;
    if end_hour < fit_end {
        return Err(CalibrateError::Window(format!(
            "it must end at or after the fit end {}",
            format_ms(hour_to_ms(fit_end))
        )));
    }
    let last = assets
        .iter()
        .map(|a| a.grid.last_hour())
        .max()
        .unwrap_or(i64::MIN);
    if end_hour > last {
        return Err(CalibrateError::Window(format!(
            "the candles end at {}, before its end {}",
            format_ms(hour_to_ms(last)),
            format_ms(hour_to_ms(end_hour))
        )));
    }
    let days = model
        .metadata
        .recalibration
        .as_ref()
        .and_then(|r| r.rolling_days)
        .unwrap_or(model.config.holdout_days);
    let mut metadata = model.metadata.clone();
    if metadata
        .recalibration
        .as_ref()
        .is_some_and(|r| r.adaptive.is_some())
    {
        // The adaptive state is the replay's from the fit end to this day: the same code as
        // `evaluate`'s.
        let day = end_hour - end_hour.rem_euclid(24);
        let op = DailyRecalibrated::new(model, days).operate(assets, &[], (day, day))?;
        let corrections = op.corrections.get(&day).cloned().flatten().ok_or_else(|| {
            CalibrateError::TooLittleData(format!(
                "fewer than {MIN_RECALIBRATION_POINTS} completed daily forecasts at some horizon"
            ))
        })?;
        metadata.recalibration = Some(corrections);
        if let (Some(risk), Some(factors)) = (metadata.risk.as_mut(), op.factors.get(&day)) {
            risk.model = risk.model.with_factors(factors);
        }
    } else {
        let combine = model
            .metadata
            .recalibration
            .as_ref()
            .is_some_and(|r| !r.har_weight.is_empty());
        metadata.recalibration = Some(recalibrate(model, assets, end_hour, days, combine)?);
    }
    Ok(artifact::save(out, model.model.clone(), &model.config, metadata)?)
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
                drawdown_step: 0.0,
                quantile_level: BTreeMap::new(),
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
}
