//! Calibrating an artifact after training, on data of its fit period only, in two steps stored in
//! its metadata:
//!
//! 1. [`recalibrate`]: the level and quantile corrections of the network's outputs
//!    ([`Recalibration`]), measured on the daily origins of the early-stopping holdout, and
//!    re-measured every day in operation ([`refresh_recalibration`], [`crate::rolling`]);
//! 2. [`calibrate`]: the risk engine's drawdown distribution of the (corrected) model's and the
//!    HAR baseline's variance forecasts, on the last [`CALIBRATION_DAYS`] of the fit period
//!    ([`volcast_core::drawdown`]).

use std::collections::BTreeMap;
use std::path::Path;

use crate::rolling::{
    CalibrateError, DEFAULT_DRAWDOWN_STEP, DEFAULT_QUANTILE_STEP, DailyRecalibrated, History,
    MIN_RECALIBRATION_POINTS, operated, raw_predictions,
};
use volcast_core::baselines::set::har_curve;
use volcast_core::drawdown::{
    CALIBRATION_DAYS, CALIBRATION_STRIDE, VarianceCurve, calibration_origins, fit_calibration,
};
use volcast_core::forecast::{DrawdownQuery, ForecastError, ForecastRequest, ForecastTable, Origin};
use volcast_core::grid::Asset;
use volcast_core::panel::{daily_slots, prepare};
use volcast_core::policy::{DEFAULT_ALPHA, DEFAULT_TAU};
use volcast_model::artifact::{self, Adaptive, Recalibration, RiskCalibration};
use volcast_model::inference::LoadedModel;

pub use crate::rolling::fit_end_hour;

/// The model's forecasts, as operated ([`operated`]), at every horizon it has, at `origins`.
fn forecast_all(
    model: &LoadedModel,
    assets: &[Asset],
    origins: &[Origin],
) -> Result<ForecastTable, ForecastError> {
    operated(model).forecast(&ForecastRequest {
        assets,
        origins,
        horizons: &model.metadata.horizons,
        drawdown: DrawdownQuery {
            alpha: DEFAULT_ALPHA,
            tau: DEFAULT_TAU,
        },
    })
}

/// Measures the drawdown calibrations of `model` and of its HAR baseline on the calibration
/// window ending at `fit_end_hour` (windows that end after it are never used), with a fitted
/// exponent when `fit_exponent` ([`volcast_core::drawdown`]).
///
/// # Errors
/// [`CalibrateError`] when the model fails or a window has too few points.
pub fn calibrate(
    model: &LoadedModel,
    assets: &[Asset],
    fit_end_hour: i64,
    fit_exponent: bool,
) -> Result<RiskCalibration, CalibrateError> {
    let from_hour = fit_end_hour - 24 * CALIBRATION_DAYS;
    let origins = calibration_origins(assets, from_hour, fit_end_hour, CALIBRATION_STRIDE);
    let horizons = model.metadata.horizons.clone();
    let table = forecast_all(model, assets, &origins)?;
    let curves: Vec<VarianceCurve> = (0..origins.len())
        .map(|i| {
            let variances: Vec<f64> = horizons
                .iter()
                .map(|h| table.horizons.get(h).map_or(f64::NAN, |f| f.variance[i]))
                .collect();
            VarianceCurve::new(&horizons, &variances)
        })
        .collect();
    let model_calibration = fit_calibration(
        assets,
        &origins,
        fit_end_hour,
        CALIBRATION_STRIDE,
        fit_exponent,
        &|i, tau| curves[i].at(tau as f64),
    )
    .ok_or_else(|| {
        CalibrateError::TooLittleData(format!(
            "{} origins in the {CALIBRATION_DAYS} days before the fit end",
            origins.len()
        ))
    })?;
    let prepared = prepare(assets, &horizons);
    let har = &model.metadata.har;
    let har_calibration = fit_calibration(
        assets,
        &origins,
        fit_end_hour,
        CALIBRATION_STRIDE,
        fit_exponent,
        &|i, tau| {
            let o = origins[i];
            har_curve(har, &prepared[o.asset], o.slot).at(tau as f64)
        },
    );
    Ok(RiskCalibration {
        model: model_calibration,
        har: har_calibration,
    })
}

/// Measures the [`Recalibration`] of `model`'s raw outputs (any correction it already carries is
/// ignored) on the daily origins of the last `days` before `end_hour` whose target windows end by
/// then: at training, the early-stopping holdout; in operation, the trailing window of the daily
/// job (see [`crate::rolling`]). The result declares `rolling_days = days`; with `combine`, it
/// also weighs the network against the artifact's HAR ([`Recalibration::har_weight`]).
///
/// # Errors
/// [`CalibrateError`] when the model fails or a horizon has fewer than
/// [`crate::rolling::MIN_RECALIBRATION_POINTS`] points.
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

/// Recalibrates and calibrates the artifact `model` on `assets` (data of its fit period only),
/// records the market's worst windows for the stress simulation, and writes the result (same
/// weights, metadata with [`Metadata::recalibration`](artifact::Metadata::recalibration),
/// [`Metadata::risk`](artifact::Metadata::risk) (`fit_exponent`: see [`calibrate`]) and
/// [`Metadata::stress_scenarios`](artifact::Metadata::stress_scenarios), a new content id) into
/// `out`; returns its directory.
///
/// # Errors
/// [`CalibrateError`] on a read, forecast or write failure, or too little data.
pub fn calibrate_artifact(
    model: &LoadedModel,
    assets: &[Asset],
    out: &Path,
    fit_exponent: bool,
) -> Result<artifact::Saved, CalibrateError> {
    let end = fit_end_hour(&model.metadata)?;
    let mut metadata = model.metadata.clone();
    // Artifacts calibrated from now on blend the network with HAR, weights measured daily, and
    // adapt the levels of their quantiles and drawdown from the fit end on.
    let mut recalibration = recalibrate(model, assets, end, model.config.holdout_days, true)?;
    recalibration.adaptive = Some(Adaptive {
        quantile_step: DEFAULT_QUANTILE_STEP,
        drawdown_step: DEFAULT_DRAWDOWN_STEP,
        quantile_level: BTreeMap::new(),
    });
    metadata.recalibration = Some(recalibration);
    metadata.stress_scenarios = volcast_core::stress::market_stress_scenarios(assets, end);
    let corrected = model.with_metadata(metadata.clone());
    metadata.risk = Some(calibrate(&corrected, assets, end, fit_exponent)?);
    metadata.uncalibrated = None;
    Ok(artifact::save(out, model.model.clone(), &model.config, metadata)?)
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
            volcast_core::time::format_ms(volcast_core::time::hour_to_ms(fit_end))
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
            volcast_core::time::format_ms(volcast_core::time::hour_to_ms(last)),
            volcast_core::time::format_ms(volcast_core::time::hour_to_ms(end_hour))
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
