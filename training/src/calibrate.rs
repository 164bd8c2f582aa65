//! Calibrating an artifact after training, on data of its fit period only, in two steps stored in
//! its metadata:
//!
//! 1. [`recalibrate`]: the level and quantile corrections of the network's outputs
//!    ([`Recalibration`]), measured on the daily origins of the early-stopping holdout;
//! 2. [`calibrate`]: the risk engine's drawdown distribution of the (corrected) model's and the
//!    HAR baseline's variance forecasts, on the last [`CALIBRATION_DAYS`] of the fit period
//!    ([`crate::drawdown`]).

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use crate::artifact::{self, ArtifactError, Metadata, Recalibration, RiskCalibration};
use crate::baselines::set::har_curve;
use crate::drawdown::{
    CALIBRATION_DAYS, CALIBRATION_STRIDE, VarianceCurve, calibration_origins, fit_calibration,
    sorted_quantile,
};
use crate::forecast::{DrawdownQuery, ForecastError, ForecastRequest, ForecastTable, Forecaster, Origin};
use crate::grid::Asset;
use crate::inference::LoadedModel;
use crate::panel::{daily_slots, prepare};
use crate::risk::{DEFAULT_ALPHA, DEFAULT_TAU};
use crate::time::{close_hour_of_open_ms, format_ms, hour_to_ms, parse_time};

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
}

/// The close hour of the artifact's last fitting candle.
///
/// # Errors
/// [`CalibrateError::TooLittleData`] when the metadata's `fit_until` is not a time.
pub fn fit_end_hour(metadata: &Metadata) -> Result<i64, CalibrateError> {
    parse_time(&metadata.fit_until, crate::time::Bound::Start)
        .map(close_hour_of_open_ms)
        .map_err(|e| CalibrateError::TooLittleData(format!("fit_until {}: {e}", metadata.fit_until)))
}

/// The model's forecasts at every horizon it has, at `origins`.
fn forecast_all(
    model: &LoadedModel,
    assets: &[Asset],
    origins: &[Origin],
) -> Result<ForecastTable, ForecastError> {
    model.forecast(&ForecastRequest {
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
/// window ending at `fit_end_hour` (windows that end after it are never used).
///
/// # Errors
/// [`CalibrateError`] when the model fails or a window has too few points.
pub fn calibrate(
    model: &LoadedModel,
    assets: &[Asset],
    fit_end_hour: i64,
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
    #[allow(clippy::cast_precision_loss)]
    let model_calibration = fit_calibration(assets, &origins, fit_end_hour, CALIBRATION_STRIDE, &|i, tau| {
        curves[i].at(tau as f64)
    })
    .ok_or_else(|| {
        CalibrateError::TooLittleData(format!(
            "{} origins in the {CALIBRATION_DAYS} days before the fit end",
            origins.len()
        ))
    })?;
    let prepared = prepare(assets, &horizons);
    let har = &model.metadata.har;
    #[allow(clippy::cast_precision_loss)]
    let har_calibration = fit_calibration(assets, &origins, fit_end_hour, CALIBRATION_STRIDE, &|i, tau| {
        let o = origins[i];
        har_curve(har, &prepared[o.asset], o.slot).at(tau as f64)
    });
    Ok(RiskCalibration {
        model: model_calibration,
        har: har_calibration,
    })
}

/// Fewest holdout points per horizon for a correction to be measured.
pub const MIN_RECALIBRATION_POINTS: usize = 20;

/// Measures the [`Recalibration`] of `model`'s raw outputs (any correction it already carries is
/// ignored) on the daily origins of the last `holdout_days` before `fit_end_hour` whose target
/// windows end by then.
///
/// # Errors
/// [`CalibrateError`] when the model fails or a horizon has fewer than
/// [`MIN_RECALIBRATION_POINTS`] points.
pub fn recalibrate(
    model: &LoadedModel,
    assets: &[Asset],
    fit_end_hour: i64,
    holdout_days: usize,
) -> Result<Recalibration, CalibrateError> {
    let mut raw = model.metadata.clone();
    raw.recalibration = None;
    let raw = model.with_metadata(raw);
    let from_hour = fit_end_hour - 24 * i64::try_from(holdout_days).unwrap_or(i64::MAX / 48);
    let origins: Vec<Origin> = assets
        .iter()
        .enumerate()
        .flat_map(|(a, asset)| {
            daily_slots(asset, from_hour, fit_end_hour).map(move |slot| Origin { asset: a, slot })
        })
        .collect();
    let horizons = raw.metadata.horizons.clone();
    let table = forecast_all(&raw, assets, &origins)?;
    let prepared = prepare(assets, &horizons);
    let mut out = Recalibration {
        from: format_ms(hour_to_ms(from_hour)),
        until: format_ms(hour_to_ms(fit_end_hour)),
        points: BTreeMap::new(),
        variance_scale: BTreeMap::new(),
        quantile_scale: BTreeMap::new(),
    };
    for &h in &horizons {
        let Some(f) = table.horizons.get(&h) else { continue };
        let span = i64::try_from(h).unwrap_or(i64::MAX / 2);
        let points: Vec<(usize, f64)> = origins
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let rv = prepared[o.asset].target(o.slot, h);
                let ok = assets[o.asset].grid.hour(o.slot) + span <= fit_end_hour
                    && rv.is_finite()
                    && rv > 0.0
                    && f.variance[i].is_finite()
                    && f.variance[i] > 0.0;
                ok.then_some((i, rv))
            })
            .collect();
        if points.len() < MIN_RECALIBRATION_POINTS {
            return Err(CalibrateError::TooLittleData(format!(
                "{} holdout points at {h}h (need {MIN_RECALIBRATION_POINTS})",
                points.len()
            )));
        }
        #[allow(clippy::cast_precision_loss)]
        let scale = points.iter().map(|&(i, rv)| rv / f.variance[i]).sum::<f64>() / points.len() as f64;
        let quantile_scale = f
            .quantiles
            .iter()
            .map(|q| {
                let mut ratios: Vec<f64> = points
                    .iter()
                    .map(|&(i, rv)| rv / q.values[i])
                    .filter(|r| r.is_finite())
                    .collect();
                ratios.sort_by(f64::total_cmp);
                sorted_quantile(&ratios, q.level)
            })
            .collect();
        out.points.insert(h, points.len());
        out.variance_scale.insert(h, scale);
        out.quantile_scale.insert(h, quantile_scale);
    }
    Ok(out)
}

/// Recalibrates and calibrates the artifact `model` on `assets` (data of its fit period only),
/// records the market's worst windows for the stress simulation, and writes the result (same
/// weights, metadata with [`Metadata::recalibration`], [`Metadata::risk`] and
/// [`Metadata::stress_scenarios`], a new content id) into `out`; returns its directory.
///
/// # Errors
/// [`CalibrateError`] on a read, forecast or write failure, or too little data.
pub fn calibrate_artifact(
    model: &LoadedModel,
    assets: &[Asset],
    out: &Path,
) -> Result<PathBuf, CalibrateError> {
    let end = fit_end_hour(&model.metadata)?;
    let mut metadata = model.metadata.clone();
    metadata.recalibration = Some(recalibrate(model, assets, end, model.config.holdout_days)?);
    metadata.stress_scenarios = crate::stress::market_stress_scenarios(assets, end);
    let corrected = model.with_metadata(metadata.clone());
    metadata.risk = Some(calibrate(&corrected, assets, end)?);
    Ok(artifact::save(out, model.model.clone(), &model.config, metadata)?)
}
