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

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;

use crate::artifact::ArtifactError;
use crate::artifact::{self, Adaptive, Recalibration};
use crate::inference::{LoadedModel, Prediction};
use volcast_core::drawdown::{DrawdownCalibration, Fall, VarianceCurve, adaptive_factors};
use volcast_core::forecast::{DrawdownQuery, ForecastError, ForecastRequest, Origin};
use volcast_core::grid::Asset;
use volcast_core::panel::{daily_slots, prepare};
use volcast_core::policy::{DEFAULT_ALPHA, DEFAULT_TAU};
use volcast_core::time::{format_ms, hour_to_ms};

mod defaults;
mod forecaster;
mod har;
mod history;

pub use defaults::{
    DEFAULT_BLEND_AS_SERVED_AT, DEFAULT_BLEND_WINDOW_MAX_DAYS, DEFAULT_DRAWDOWN_STEP, DEFAULT_HAR_GUARD,
    DEFAULT_QUANTILE_STEP, DEFAULT_SHORTAGE_STACK, DEFAULT_SHRINK_AS_SERVED,
};
pub use forecaster::{FixedModel, Recorded, operated};
pub use har::{TrailingRatios, har_operated};
pub use history::{BlendHindsight, History};

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
    before_fit_end: Option<&'a LoadedModel>,
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
            before_fit_end: None,
        }
    }

    /// The same with the raw forecasts at origins before `model`'s fit end (hour) made by
    /// `before` instead: networks that were not trained on those origins (e.g. the early-stopped
    /// ones of a model trained until its fit end), so that the daily job's windows that reach
    /// back before the fit end hold out-of-sample forecasts.
    #[must_use]
    pub fn with_before_fit_end(mut self, before: &'a LoadedModel) -> Self {
        self.before_fit_end = Some(before);
        self
    }

    /// The model operated.
    #[must_use]
    pub fn model(&self) -> &'a LoadedModel {
        self.model
    }

    /// The daily job's trailing window, days.
    #[must_use]
    pub fn days(&self) -> usize {
        self.days
    }

    /// The adaptive settings it operates with (None: fixed levels).
    #[must_use]
    pub fn adaptive(&self) -> Option<&Adaptive> {
        self.adaptive.as_ref()
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
    /// The completed raw forecasts the corrections were measured on (for diagnostics such as
    /// [`History::blend_in_hindsight`]).
    pub history: History,
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
        let query = DrawdownQuery {
            alpha: DEFAULT_ALPHA,
            tau: DEFAULT_TAU,
        };
        let raw = match self.before_fit_end {
            None => raw_predictions(model, assets, &all, query)?,
            Some(before) => {
                let fit_end = fit_end_hour(metadata).map_err(|e| fail(e.to_string()))?;
                let (early, late): (Vec<usize>, Vec<usize>) =
                    (0..all.len()).partition(|&i| assets[all[i].asset].grid.hour(all[i].slot) < fit_end);
                let pick = |idx: &[usize]| idx.iter().map(|&i| all[i]).collect::<Vec<Origin>>();
                let mut raw = vec![None; all.len()];
                for (idx, m) in [(early, before), (late, model)] {
                    for (i, p) in idx.iter().zip(raw_predictions(m, assets, &pick(&idx), query)?) {
                        raw[*i] = p;
                    }
                }
                raw
            }
        };
        let prepared = prepare(assets, horizons);
        // Before the daily job's first day, the trained artifact's corrections were in force,
        // whichever day's artifact is operated (the service starts from yesterday's).
        let stored = metadata.fit_end_corrections();
        let mut history = History::new(
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
        if self.adaptive.as_ref().is_some_and(|a| a.shortage_stack) {
            history = history.with_shortage(assets, &prepared, &all, &raw);
        }
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
                    if !r.shortage_stack.is_empty() {
                        r.stack_shortage(
                            horizons,
                            &mut p.shortage_probability,
                            &metadata.shortage_scores_at(&prepared[o.asset], o.slot),
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
            history,
        })
    }
}

impl Operation {
    /// The blend with HAR as served over the days from `first_day` to `last_day` (midnights)
    /// against fixed weights in hindsight ([`History::blend_in_hindsight`]; `stored`: the
    /// artifact's corrections, where a day has none); empty for a model without the blend.
    #[must_use]
    pub fn blend_in_hindsight(
        &self,
        days: (i64, i64),
        stored: Option<&Recalibration>,
    ) -> Vec<BlendHindsight> {
        self.history.blend_in_hindsight(days, &self.corrections, stored)
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
/// job (see the training crate's `rolling`). The result declares `rolling_days = days`; with `combine`, it
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
    metadata.fit_end_recalibration = model.metadata.fit_end_corrections().cloned();
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
