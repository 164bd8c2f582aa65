//! Calibrating an artifact's risk engine: the drawdown distribution of the model's (and its HAR
//! baseline's) variance forecasts, measured on the last [`CALIBRATION_DAYS`] of its fit period
//! ([`crate::drawdown`]), stored in the artifact's metadata.

use std::path::{Path, PathBuf};

use crate::artifact::{self, ArtifactError, Metadata, RiskCalibration};
use crate::baselines::set::har_curve;
use crate::drawdown::{
    CALIBRATION_DAYS, CALIBRATION_STRIDE, VarianceCurve, calibration_origins, fit_calibration,
};
use crate::forecast::{DrawdownQuery, ForecastError, ForecastRequest, Forecaster};
use crate::grid::Asset;
use crate::inference::LoadedModel;
use crate::panel::prepare;
use crate::risk::{DEFAULT_ALPHA, DEFAULT_TAU};
use crate::time::{close_hour_of_open_ms, parse_time};

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
    let request = ForecastRequest {
        assets,
        origins: &origins,
        horizons: &horizons,
        drawdown: DrawdownQuery {
            alpha: DEFAULT_ALPHA,
            tau: DEFAULT_TAU,
        },
    };
    let table = model.forecast(&request)?;
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

/// Calibrates the artifact at `dir` on `assets` and writes the calibrated artifact (same weights,
/// metadata with [`Metadata::risk`], a new content id) into `out`; returns its directory.
///
/// # Errors
/// [`CalibrateError`] on a read, forecast or write failure.
pub fn calibrate_artifact(
    model: &LoadedModel,
    assets: &[Asset],
    out: &Path,
) -> Result<PathBuf, CalibrateError> {
    let end = fit_end_hour(&model.metadata)?;
    let risk = calibrate(model, assets, end)?;
    let mut metadata = model.metadata.clone();
    metadata.risk = Some(risk);
    Ok(artifact::save(out, model.model.clone(), &model.config, metadata)?)
}
