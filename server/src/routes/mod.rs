//! Handlers, one module per area, and the shared step every forecast route takes: validate and
//! prepare each asset, then one trip through the batching queue.

pub mod anomaly;
pub mod assets;
pub mod decisions;
pub mod forecast;
pub mod meta;
pub mod risk_parameters;
pub mod risk_stress;
pub mod updates;

use volcast_model::inference::Prediction;

use crate::dto::{CandleDto, ForecastUsed};
use crate::error::ApiError;
use crate::inputs::{Prepared, prepare};
use crate::state::{AppState, Serving};

/// OpenAPI tag of the forecast routes.
pub const FORECAST_TAG: &str = "forecast";
/// OpenAPI tag of the risk routes.
pub const RISK_TAG: &str = "risk";
/// OpenAPI tag of the market-data routes.
pub const MARKET_TAG: &str = "market data";
/// OpenAPI tag of the operational routes.
pub const OPS_TAG: &str = "operations";

/// Prepares every item (failing on the first bad one, before the model is involved), then
/// forecasts them all in one queue job. Fails closed: an item whose inputs or forecasts are not
/// all finite fails the request ([`ApiError::UnusableInput`]) instead of being served.
///
/// # Errors
/// The first item's validation error, the queue's error, or [`ApiError::UnusableInput`].
pub async fn forecast_items(
    state: &AppState,
    serving: &Serving,
    items: Vec<(String, String, &[CandleDto])>,
) -> Result<Vec<(Prepared, Prediction)>, ApiError> {
    let limits = state.settings().limits;
    let prepared = items
        .into_iter()
        .map(|(prefix, asset, candles)| {
            let p = prepare(&serving.info, limits, &prefix, asset, candles)?;
            let finite_input = p
                .input
                .statics
                .iter()
                .chain(&p.input.sequence)
                .all(|x| x.is_finite());
            if !finite_input {
                return Err(unusable(&prefix, &p.asset, "model inputs"));
            }
            Ok((prefix, p))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = prepared.iter().map(|(_, p)| p.input.clone()).collect();
    let mut predictions = serving.queue.predict(inputs).await?;
    let metadata = &serving.info.metadata;
    for ((prefix, prep), pred) in prepared.iter().zip(&mut predictions) {
        // The served variance: the corrected network (carried where the artifact's term
        // structure says) blended with HAR where it says; the served shortage probability:
        // stacked with the baseline score where it says so.
        metadata.combine(&prep.har, &prep.shortage_score, pred);
        check_prediction(prefix, &prep.asset, pred)?;
    }
    Ok(prepared.into_iter().map(|(_, p)| p).zip(predictions).collect())
}

/// [`ApiError::UnusableInput`] for the item at `prefix`: its magnitudes made `what` non-finite.
#[must_use]
pub fn unusable(prefix: &str, asset: &str, what: &str) -> ApiError {
    ApiError::UnusableInput {
        field: format!("{prefix}candles"),
        message: format!(
            "the magnitudes of {asset}'s prices or volumes produced non-finite {what}; \
             no forecast is served on them (check the candles' units)"
        ),
    }
}

/// Every variance, quantile and shortage probability of `pred` must be finite (and the
/// variances and quantiles >= 0, the probabilities in [0, 1]).
///
/// # Errors
/// [`ApiError::UnusableInput`] naming the item's candles.
pub fn check_prediction(prefix: &str, asset: &str, pred: &Prediction) -> Result<(), ApiError> {
    let nonneg = |x: &f64| x.is_finite() && *x >= 0.0;
    if !pred.variance.iter().all(nonneg) {
        return Err(unusable(prefix, asset, "variance forecasts"));
    }
    if !pred.quantiles.iter().flatten().all(nonneg) {
        return Err(unusable(prefix, asset, "variance quantiles"));
    }
    if !pred
        .shortage_probability
        .iter()
        .all(|p| p.is_finite() && (0.0..=1.0).contains(p))
    {
        return Err(unusable(prefix, asset, "shortage probabilities"));
    }
    Ok(())
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
