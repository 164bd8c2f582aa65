//! Calibrating an artifact after training, on data of its fit period only, in two steps stored in
//! its metadata:
//!
//! 1. [`recalibrate`]: the level and quantile corrections of the network's outputs
//!    ([`Recalibration`](volcast_model::artifact::Recalibration)), measured on the daily origins of the early-stopping holdout, and
//!    re-measured every day in operation ([`refresh_recalibration`], [`crate::rolling`]). A
//!    network refit through the holdout (the default `refit_through_holdout`) was trained on
//!    those origins: the corrections measured at training are in sample, and so is the
//!    drawdown calibration below (`walkforward --before-fit-end-from` takes the daily job's
//!    forecasts before the fit end from a network fit before them);
//! 2. [`calibrate`]: the risk engine's drawdown distribution of the (corrected) model's and the
//!    HAR baseline's variance forecasts, on the last [`CALIBRATION_DAYS`] of the fit period
//!    ([`volcast_core::drawdown`]).

use std::collections::BTreeMap;
use std::path::Path;

use crate::rolling::{
    CalibrateError, DEFAULT_BLEND_AS_SERVED_AT, DEFAULT_BLEND_WINDOW_MAX_DAYS, DEFAULT_DRAWDOWN_STEP,
    DEFAULT_HAR_GUARD, DEFAULT_QUANTILE_STEP, DEFAULT_SHORTAGE_STACK, DEFAULT_SHRINK_AS_SERVED, operated,
};
pub use crate::rolling::{recalibrate, refresh_recalibration};
use volcast_core::baselines::set::har_curve;
use volcast_core::drawdown::{
    CALIBRATION_DAYS, CALIBRATION_STRIDE, VarianceCurve, calibration_origins, fit_calibration,
};
use volcast_core::forecast::{DrawdownQuery, ForecastError, ForecastRequest, ForecastTable, Origin};
use volcast_core::grid::Asset;
use volcast_core::panel::prepare;
use volcast_core::policy::{DEFAULT_ALPHA, DEFAULT_TAU};
use volcast_model::artifact::{self, Adaptive, RiskCalibration};
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
    // The source's out-of-sample scores were measured under its corrections, not these:
    // `score_out_of_sample` writes the new artifact's own where the data reaches past the fit.
    metadata.validation = BTreeMap::new();
    // The corrections measured below are the fit end's: a source the daily job wrote carries
    // the trained artifact's in `fit_end_recalibration`, which would otherwise stay in force
    // for the replay and the daily job (and, made under an older rule, leave out the HAR blend).
    metadata.fit_end_recalibration = None;
    // Artifacts calibrated from now on blend the network with HAR, weights measured daily, and
    // adapt the levels of their quantiles and drawdown from the fit end on.
    let mut recalibration = recalibrate(model, assets, end, model.config.holdout_days, true)?;
    recalibration.adaptive = Some(Adaptive {
        quantile_step: DEFAULT_QUANTILE_STEP,
        drawdown_step: DEFAULT_DRAWDOWN_STEP,
        quantile_level: BTreeMap::new(),
        blend_as_served: false,
        blend_as_served_at: DEFAULT_BLEND_AS_SERVED_AT.to_vec(),
        shrink_as_served: DEFAULT_SHRINK_AS_SERVED,
        shortage_stack: DEFAULT_SHORTAGE_STACK,
        har_guard: DEFAULT_HAR_GUARD,
        blend_window_max_days: DEFAULT_BLEND_WINDOW_MAX_DAYS,
    });
    metadata.recalibration = Some(recalibration);
    metadata.stress_scenarios = volcast_core::stress::market_stress_scenarios(assets, end);
    let corrected = model.with_metadata(metadata.clone());
    metadata.risk = Some(calibrate(&corrected, assets, end, fit_exponent)?);
    metadata.uncalibrated = None;
    Ok(artifact::save(out, model.model.clone(), &model.config, metadata)?)
}
