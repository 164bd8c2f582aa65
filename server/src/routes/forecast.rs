//! `POST /v1/forecast/volatility` and `POST /v1/forecast/liquidity`.

use axum::Json;
use axum::extract::State;

use crate::dto::policy as gate;
use crate::dto::{
    AssetCandles, AssetLiquidity, AssetVolatility, ForecastRequest, LiquidityHorizon, LiquidityResponse,
    QuantileDto, VarianceDto, VolatilityHorizon, VolatilityResponse,
};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::inputs::{Prepared, horizon_indices, shape};
use crate::model_info::ModelInfo;
use crate::routes::{FORECAST_TAG, finite, forecast_items, unusable};
use crate::state::{AppState, Serving};
use volcast_core::policy;
use volcast_model::inference::Prediction;

/// Hours in a year, for annualizing.
const HOURS_PER_YEAR: f64 = 8760.0;

/// Variance, volatility and annualized volatility over `horizon` hours.
#[must_use]
pub fn variance_dto(variance: f64, horizon: usize) -> VarianceDto {
    VarianceDto {
        variance,
        volatility: variance.sqrt(),
        annualized_volatility: (variance * HOURS_PER_YEAR / horizon as f64).sqrt(),
    }
}

/// Validates a forecast request's asset shape (single or batch) and runs the model on it; each
/// result comes with its item's JSON path prefix (empty for one asset).
async fn forecast_body(
    state: &AppState,
    serving: &Serving,
    body: ForecastRequest,
) -> Result<Vec<(String, Prepared, Prediction)>, ApiError> {
    let items = shape(
        (body.asset, body.candles),
        body.items,
        state.settings().max_items,
        |asset, candles| AssetCandles { asset, candles },
    )?;
    let refs = items
        .iter()
        .map(|(p, i)| (p.clone(), i.asset.clone(), i.candles.as_slice()))
        .collect();
    let results = forecast_items(state, serving, refs).await?;
    Ok(items
        .into_iter()
        .zip(results)
        .map(|((prefix, _), (prep, pred))| (prefix, prep, pred))
        .collect())
}

/// Volatility forecasts per horizon, beside the HAR baseline.
#[utoipa::path(
    post,
    path = "/v1/forecast/volatility",
    tag = FORECAST_TAG,
    request_body = ForecastRequest,
    responses(
        (status = 200, description = "Forecasts, one item per asset", body = VolatilityResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body, batch or candle array too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid input (bad candle, too little history, unknown horizon, inputs whose magnitudes give a non-finite forecast...)", body = ErrorBody),
        (status = 429, description = "Inference queue full; see Retry-After", body = ErrorBody),
        (status = 503, description = "Model not ready, or timeout", body = ErrorBody),
    )
)]
pub async fn volatility(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ForecastRequest>,
) -> Result<Json<VolatilityResponse>, ApiError> {
    volatility_answer(&state, body).await.map(Json)
}

/// The volatility answer to a forecast request (the POST route's, and the asset route's on
/// stored candles).
///
/// # Errors
/// The request's first problem, or the model's.
pub async fn volatility_answer(
    state: &AppState,
    body: ForecastRequest,
) -> Result<VolatilityResponse, ApiError> {
    if let Some(value) = body.sale_size_usd {
        // The volatility answer has no slippage: a sale size here is a mistake, not a setting.
        return Err(ApiError::InvalidValue {
            field: "sale_size_usd".into(),
            message: format!(
                "sale_size_usd ({value}) is for the liquidity forecast only; the volatility \
                 forecast does not read it"
            ),
        });
    }
    let serving = state.serving()?;
    let wanted = horizon_indices(&serving.info, body.horizons.as_deref())?;
    let results = forecast_body(state, &serving, body).await?;
    Ok(volatility_response(
        &serving.info,
        &wanted,
        results.iter().map(|(_, prep, pred)| (prep, pred)),
    ))
}

/// The volatility answer for forecasts already made, at the horizons `wanted` (indices).
pub fn volatility_response<'a>(
    info: &ModelInfo,
    wanted: &[usize],
    results: impl Iterator<Item = (&'a Prepared, &'a Prediction)>,
) -> VolatilityResponse {
    let levels = &info.metadata.quantile_levels;
    // On the gate's fallback, HAR's variance is served where it exists (README, "Continuous
    // validation").
    let fallback = info.policy.is_fallback();
    let items = results
        .map(|(prep, pred)| AssetVolatility {
            origin: prep.origin(),
            horizons: wanted
                .iter()
                .map(|&j| {
                    let h = info.horizons()[j];
                    VolatilityHorizon {
                        horizon_hours: h,
                        model: variance_dto(pred.variance[j], h),
                        quantiles: levels
                            .iter()
                            .zip(&pred.quantiles[j])
                            .map(|(&level, &q)| QuantileDto {
                                level,
                                variance: q,
                                volatility: q.sqrt(),
                            })
                            .collect(),
                        har: finite(prep.har[j]).map(|v| variance_dto(v, h)),
                        served: if fallback && finite(prep.har[j]).is_some() {
                            gate::HAR.into()
                        } else {
                            gate::MODEL.into()
                        },
                    }
                })
                .collect(),
            asset: prep.asset.clone(),
        })
        .collect();
    VolatilityResponse {
        model: info.reference(),
        items,
    }
}

/// Liquidity-shortage probabilities, illiquidity and expected slippage per horizon.
#[utoipa::path(
    post,
    path = "/v1/forecast/liquidity",
    tag = FORECAST_TAG,
    request_body = ForecastRequest,
    responses(
        (status = 200, description = "Forecasts, one item per asset", body = LiquidityResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body, batch or candle array too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
        (status = 429, description = "Inference queue full; see Retry-After", body = ErrorBody),
        (status = 503, description = "Model not ready, or timeout", body = ErrorBody),
    )
)]
pub async fn liquidity(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ForecastRequest>,
) -> Result<Json<LiquidityResponse>, ApiError> {
    liquidity_answer(&state, body).await.map(Json)
}

/// The liquidity answer to a forecast request (the POST route's, and the asset route's on
/// stored candles).
///
/// # Errors
/// The request's first problem, or the model's.
pub async fn liquidity_answer(
    state: &AppState,
    body: ForecastRequest,
) -> Result<LiquidityResponse, ApiError> {
    // The request's own mistake first: 422 while the model loads too, not a 503 a client retries.
    let sale = sale_size(state, body.sale_size_usd)?;
    let serving = state.serving()?;
    let wanted = horizon_indices(&serving.info, body.horizons.as_deref())?;
    let results = forecast_body(state, &serving, body).await?;
    liquidity_response(
        &serving.info,
        &wanted,
        sale,
        results
            .iter()
            .map(|(prefix, prep, pred)| (prefix.as_str(), prep, pred)),
    )
}

/// The sale size asked, or the config's default, checked against its range.
///
/// # Errors
/// [`ApiError::OutOfRange`] naming `sale_size_usd`.
pub fn sale_size(state: &AppState, asked: Option<f64>) -> Result<f64, ApiError> {
    Ok(policy::SALE_SIZE_RANGE.check(
        "sale_size_usd",
        asked.unwrap_or(state.settings().defaults.sale_size_usd),
    )?)
}

/// The liquidity answer for forecasts already made (each with its item's JSON path prefix).
///
/// # Errors
/// [`ApiError::UnusableInput`] when an expected slippage is not finite.
pub fn liquidity_response<'a>(
    info: &ModelInfo,
    wanted: &[usize],
    sale: f64,
    results: impl Iterator<Item = (&'a str, &'a Prepared, &'a Prediction)>,
) -> Result<LiquidityResponse, ApiError> {
    let items = results
        .map(|(prefix, prep, pred)| {
            let horizons = wanted
                .iter()
                .map(|&j| {
                    let p = pred.shortage_probability[j];
                    let current = finite(prep.illiquidity[j]);
                    let expected = current.map(|m| policy::expected_illiquidity(m, p));
                    let slippage = expected.map(|m| policy::slippage(m, sale));
                    // Fail closed: a finite illiquidity whose expected value or slippage
                    // overflows is no answer (an overflowing expected value makes the slippage
                    // non-finite too, even for a sale of 0).
                    if slippage.is_some_and(|x| !x.is_finite()) {
                        return Err(unusable(prefix, &prep.asset, "expected slippage"));
                    }
                    Ok(LiquidityHorizon {
                        horizon_hours: info.horizons()[j],
                        shortage_probability: p,
                        baseline_shortage_probability: finite(prep.baseline_shortage[j]),
                        current_illiquidity: current,
                        expected_illiquidity: expected,
                        expected_slippage: slippage,
                        liquidation_blocked: slippage.map(|s| policy::unliquidatable(Some(s))),
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(AssetLiquidity {
                origin: prep.origin(),
                sale_size_usd: sale,
                horizons,
                asset: prep.asset.clone(),
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(LiquidityResponse {
        model: info.reference(),
        items,
    })
}
