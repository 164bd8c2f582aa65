//! Handlers, one module per area, and the shared step every forecast route takes: validate and
//! prepare each asset, then one trip through the batching queue.

pub mod forecast;
pub mod meta;
pub mod risk;
pub mod stress;

use volcast_training::inference::Prediction;

use crate::dto::{CandleDto, ForecastUsed};
use crate::engine::{Prepared, prepare};
use crate::error::ApiError;
use crate::state::{AppState, Serving};

/// OpenAPI tag of the forecast routes.
pub const FORECAST_TAG: &str = "forecast";
/// OpenAPI tag of the risk routes.
pub const RISK_TAG: &str = "risk";
/// OpenAPI tag of the operational routes.
pub const OPS_TAG: &str = "operations";

/// Prepares every item (failing on the first bad one, before the model is involved), then
/// forecasts them all in one queue job.
///
/// # Errors
/// The first item's validation error, or the queue's error.
pub async fn forecast_items(
    state: &AppState,
    serving: &Serving,
    items: Vec<(String, String, &[CandleDto])>,
) -> Result<Vec<(Prepared, Prediction)>, ApiError> {
    let limits = state.settings().limits;
    let prepared = items
        .into_iter()
        .map(|(prefix, asset, candles)| prepare(&serving.info, limits, &prefix, asset, candles))
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = prepared.iter().map(|p| p.input.clone()).collect();
    let predictions = serving.queue.predict(inputs).await?;
    Ok(prepared.into_iter().zip(predictions).collect())
}

/// `Some(x)` when finite.
#[must_use]
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// The model's (and HAR's) forecasts behind a risk answer, per horizon.
#[must_use]
pub fn forecasts_used(horizons: &[usize], pred: &Prediction, prep: &Prepared) -> Vec<ForecastUsed> {
    horizons
        .iter()
        .enumerate()
        .map(|(k, &h)| ForecastUsed {
            horizon_hours: h,
            variance: pred.variance[k],
            har_variance: finite(prep.har[k]),
            shortage_probability: pred.shortage_probability[k],
        })
        .collect()
}

/// Checks an optional parameter against a range, returning it or the default.
///
/// # Errors
/// [`ApiError::OutOfRange`] naming `field`.
pub fn param(
    value: Option<f64>,
    default: f64,
    field: &str,
    range: &'static str,
    ok: impl Fn(f64) -> bool,
) -> Result<f64, ApiError> {
    let v = value.unwrap_or(default);
    if v.is_finite() && ok(v) {
        Ok(v)
    } else {
        Err(ApiError::OutOfRange {
            field: field.to_owned(),
            value: v,
            range,
        })
    }
}
