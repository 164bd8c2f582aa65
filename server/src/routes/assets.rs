//! The asset routes: answers from the service's own market data (`volcast-store`), by asset.
//!
//! `GET /v1/assets` lists what is stored and whether it can be served; `.../candles` pages
//! through an asset's candles; `.../forecast/volatility`, `.../forecast/liquidity` and `.../risk`
//! read the asset's latest `history_hours` stored candles and answer exactly what the POST
//! routes answer on those candles (the same functions run). The forecast made from a window is
//! kept until the asset's candles or the model change, so a repeated question costs a key lookup
//! and the answer's assembly, never the candles' parsing or the features again. Stale data fails closed: when the last
//! stored candle closed longer ago than `--max-staleness`, they answer 503 `stale_market_data`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use volcast_core::time::{Bound, HOUR_MS, format_ms, parse_time};
use volcast_store::CandleStore;

use crate::audit::{ToLog, id_header, routes as logged};
use crate::auth::Caller;
use crate::dto::assets::{
    AssetStatus, AssetsResponse, CandlesPage, CandlesQuery, FollowDto, LiquidityQuery, RiskQuery,
    VolatilityQuery,
};
use crate::dto::{CandleDto, LiquidityResponse, Previous, RiskRequest, RiskResponse, VolatilityResponse};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::follower::SymbolStatus;
use crate::inputs::check_asset_id;
use crate::inputs::horizon_indices;
use crate::routes::forecast::{liquidity_response, sale_size, volatility_response};
use crate::routes::risk_parameters::{
    caller_id, check_bound, check_previous, recommend_watched, settings, with_ids,
};
use crate::routes::{FORECAST_TAG, MARKET_TAG, RISK_TAG, forecast_items};
use crate::state::{AppState, Serving, StoredForecast};

/// Candles per page of `GET /v1/assets/{asset}/candles` unless `limit` says otherwise.
pub const DEFAULT_PAGE: u32 = 1000;
/// Most candles per page.
pub const MAX_PAGE: u32 = 5000;
/// Hours in the window of `missing_hours_30d`.
const MONTH_HOURS: i64 = 30 * 24;

/// Now, Unix ms.
#[must_use]
pub fn now_ms() -> i64 {
    crate::follower::wall_clock_ms()
}

/// Milliseconds since the candle opened at `last_open` closed.
#[must_use]
pub fn age_ms(last_open: i64, now: i64) -> i64 {
    now.saturating_sub(last_open.saturating_add(HOUR_MS))
}

fn is_stale(age_ms: i64, max: Duration) -> bool {
    i128::from(age_ms) > i128::try_from(max.as_millis()).unwrap_or(i128::MAX)
}

/// Refuses an asset id no asset can have (as the POST routes do), before the store is asked.
fn check_asset(asset: &str) -> Result<(), ApiError> {
    check_asset_id("asset", asset)
}

/// The model's forecast for `asset` at its latest stored hour: `forecast_items` (the POST
/// routes' code) on the latest `history_hours` stored candles (the last `n` by count, so the POST
/// routes given them keep the same hours). Refused when the last candle is stale. One key lookup
/// when nothing changed since the last time: the forecast is made again only when the asset's
/// candles or the model changed.
///
/// # Errors
/// [`ApiError::UnknownAsset`], [`ApiError::StaleMarketData`], the store's or the model's
/// readiness, and whatever the POST routes answer for those candles.
pub async fn stored_forecast(
    state: &AppState,
    serving: &Serving,
    asset: &str,
) -> Result<StoredForecast, ApiError> {
    check_asset(asset)?;
    let need = serving.info.history_hours();
    let store = state.store()?;
    let range = store.asset(asset).await?.ok_or_else(|| ApiError::UnknownAsset {
        asset: asset.to_owned(),
    })?;
    let max = state.settings().max_staleness;
    let age = age_ms(range.last_open_time, state.now_ms());
    if is_stale(age, max) {
        return Err(ApiError::StaleMarketData {
            asset: asset.to_owned(),
            last_open_time: format_ms(range.last_open_time),
            age_s: age / 1000,
            max_s: max.as_secs(),
        });
    }
    let key = (range.last_open_time, range.count, need, serving.info.hash.clone());
    if let Some(forecast) = state.forecasts().get(asset, &key) {
        return Ok(forecast);
    }
    let candles: Vec<CandleDto> = store
        .latest_candles(asset, i64::MAX, u32::try_from(need).unwrap_or(u32::MAX))
        .await?
        .into_iter()
        .map(CandleDto::from)
        .collect();
    let (prep, pred) = forecast_items(state, serving, vec![(String::new(), asset.to_owned(), &candles)])
        .await
        .map_err(|e| of_the_store(asset, e))?
        .pop()
        .ok_or_else(|| ApiError::Internal("a forecast of one asset gave none".into()))?;
    let forecast = Arc::new((prep, pred, crate::audit::Inputs::of(&candles, "store")));
    // Kept only when made from exactly the state the key names (no insert in between).
    if candles.last().map(|c| c.open_time) == Some(range.last_open_time)
        && store.asset(asset).await?.is_some_and(|r| r.count == range.count)
    {
        state.forecasts().put(asset, key, Arc::clone(&forecast));
    }
    Ok(forecast)
}

/// An error the POST routes answer for a window a caller sent (422: too few hours, too many
/// missing, a halted market, a bad candle), said of the store's window: the caller sent nothing
/// wrong, and the store, not the request, lacks what is needed (503 `stored_data_unusable`).
/// Other errors pass as they are: a full inference queue stays 429 `queue_full` with its
/// `Retry-After`.
fn of_the_store(asset: &str, e: ApiError) -> ApiError {
    if e.status_and_code().0 == StatusCode::UNPROCESSABLE_ENTITY {
        ApiError::StoredDataUnusable {
            asset: asset.to_owned(),
            message: e.to_string(),
        }
    } else {
        e
    }
}

/// `4,24` as horizons.
fn horizons(text: Option<&str>) -> Result<Option<Vec<u64>>, ApiError> {
    text.map(|t| {
        t.split(',')
            .map(|h| {
                h.trim().parse::<u64>().map_err(|_| ApiError::InvalidQuery {
                    field: "horizons".into(),
                    message: format!("{t:?}: hours as whole numbers, comma-separated (e.g. 4,24)"),
                })
            })
            .collect()
    })
    .transpose()
}

/// Refuses a time range whose `from` is after its `to` (422 on `from`).
///
/// # Errors
/// [`ApiError::InvalidValue`].
pub fn check_from_to(from: i64, to: i64) -> Result<(), ApiError> {
    if from > to {
        return Err(ApiError::InvalidValue {
            field: "from".into(),
            message: "`from` is after `to`".into(),
        });
    }
    Ok(())
}

/// A time parameter: Unix ms, RFC 3339 or a date.
pub fn time_param(field: &str, text: &str, bound: Bound) -> Result<i64, ApiError> {
    let t = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let t: i64 = text.parse().map_err(|_| ApiError::InvalidQuery {
            field: field.to_owned(),
            message: format!("{text}: too large for Unix milliseconds"),
        })?;
        // Digits naming a time in the first three years of 1970 (other than 0) are Unix
        // seconds, or a year, given for milliseconds: read as ms they would silently name
        // January 1970.
        if (1..SECONDS_LOOK_LIKE_MS).contains(&t) {
            return Err(ApiError::InvalidQuery {
                field: field.to_owned(),
                message: format!(
                    "{text}: as Unix milliseconds this is before 1973-03-03; give milliseconds \
                     (Unix seconds times 1000), RFC 3339 or a date"
                ),
            });
        }
        t
    } else {
        parse_time(text, bound).map_err(|e| ApiError::InvalidQuery {
            field: field.to_owned(),
            message: format!("{e}, or Unix milliseconds"),
        })?
    };
    // Bounded, so that the routes' time arithmetic cannot overflow (a `from` in 1900 and a `to`
    // of i64::MAX wrapped the anomalies route's 90-day check).
    if !(0..=LAST_TIME_MS).contains(&t) {
        return Err(ApiError::InvalidQuery {
            field: field.to_owned(),
            message: format!("{text}: outside 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59.999Z"),
        });
    }
    Ok(t)
}

/// Digits below this (1973-03-03T09:46:40Z in Unix ms, the year 5138 in seconds) are refused
/// as Unix ms: every plausible Unix time in seconds is below it.
const SECONDS_LOOK_LIKE_MS: i64 = 100_000_000_000;

/// 9999-12-31T23:59:59.999Z in Unix milliseconds: the latest time a query may name.
pub const LAST_TIME_MS: i64 = 253_402_300_799_999;

/// Every stored asset: its first and last candle, hours missing over the last 30 days, how old
/// its data is and whether it can be served now.
#[utoipa::path(
    get,
    path = "/v1/assets",
    tag = MARKET_TAG,
    responses(
        (status = 200, description = "The stored assets, by id", body = AssetsResponse),
        (status = 503, description = "The market-data store cannot be read", body = ErrorBody),
    )
)]
pub async fn assets(State(state): State<AppState>) -> Result<Json<AssetsResponse>, ApiError> {
    let store = state.store()?;
    let now = state.now_ms();
    let ranges = store.assets().await?;
    let month_end = now.div_euclid(HOUR_MS) * HOUR_MS - HOUR_MS;
    let recent = store
        .counts(month_end - (MONTH_HOURS - 1) * HOUR_MS, month_end)
        .await?;
    let serving = state.serving().ok();
    let history = serving.as_ref().map(|s| s.info.history_hours());
    let max = state.settings().max_staleness;
    let metrics = state.metrics();
    let mut assets = Vec::with_capacity(ranges.len());
    for r in ranges {
        let age = age_ms(r.last_open_time, now);
        metrics.set_market_data_age(&r.asset, age);
        let stale = is_stale(age, max);
        let in_month = recent
            .binary_search_by(|(a, _)| a.as_str().cmp(&r.asset))
            .map_or(0, |i| recent[i].1);
        let reason = match (&serving, history) {
            (None, _) | (_, None) => Some("the model is not ready yet".to_owned()),
            _ if stale => Some(format!(
                "stale: the last candle closed {} s ago, over the maximum of {} s",
                age / 1000,
                max.as_secs()
            )),
            (_, Some(h)) if r.count < i64::try_from(h).unwrap_or(i64::MAX) => {
                Some(format!("{} candles stored; the model needs {h}", r.count))
            }
            // What the asset routes would answer: the forecast (kept for them) or why not.
            (Some(serving), Some(_)) => stored_forecast(&state, serving, &r.asset)
                .await
                .err()
                .map(|e| e.body().message),
        };
        assets.push(AssetStatus {
            first_open_time: format_ms(r.first_open_time),
            last_open_time: format_ms(r.last_open_time),
            candles: r.count,
            missing_hours_30d: MONTH_HOURS - in_month,
            age_seconds: age / 1000,
            stale,
            servable: reason.is_none(),
            reason,
            asset: r.asset,
        });
    }
    let following = state
        .follow_status()
        .map(|f| f.snapshot().into_iter().map(follow_dto).collect())
        .unwrap_or_default();
    Ok(Json(AssetsResponse {
        now: format_ms(now),
        max_staleness_seconds: max.as_secs(),
        history_hours: history,
        assets,
        following,
    }))
}

fn follow_dto(s: SymbolStatus) -> FollowDto {
    let state = serde_json::to_value(s.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    FollowDto {
        state,
        last_open_time: s.last_open_time.map(format_ms),
        last_success: s.last_success_ms.map(format_ms),
        last_error: s.last_error,
        consecutive_failures: s.consecutive_failures,
        stored: s.stored,
        requests: s.requests,
        rate_limited: s.rate_limited,
        symbol: s.symbol,
    }
}

/// A page of an asset's stored candles, oldest first.
#[utoipa::path(
    get,
    path = "/v1/assets/{asset}/candles",
    tag = MARKET_TAG,
    params(("asset" = String, Path, description = "Asset id, e.g. BTCUSDT"), CandlesQuery),
    responses(
        (status = 200, description = "The candles in range, at most `limit`", body = CandlesPage),
        (status = 400, description = "A query parameter is unknown or does not parse", body = ErrorBody),
        (status = 404, description = "No stored candle of this asset", body = ErrorBody),
        (status = 422, description = "`limit` out of range, or `from` after `to`", body = ErrorBody),
        (status = 503, description = "The market-data store cannot be read", body = ErrorBody),
    )
)]
pub async fn candles(
    State(state): State<AppState>,
    ApiPath(asset): ApiPath<String>,
    ApiQuery(q): ApiQuery<CandlesQuery>,
) -> Result<Json<CandlesPage>, ApiError> {
    check_asset(&asset)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::OutOfRange {
            field: "limit".into(),
            value: f64::from(limit),
            range: "[1, 5000]",
        });
    }
    let to =
        q.to.as_deref()
            .map(|t| time_param("to", t, Bound::End))
            .transpose()?
            .unwrap_or(i64::MAX);
    // The query's mistakes first: 400/422 also on a service without a store, not a 503.
    let from = q
        .from
        .as_deref()
        .map(|f| time_param("from", f, Bound::Start))
        .transpose()?;
    if let Some(from) = from {
        check_from_to(from, to)?;
    }
    let store = state.store()?;
    let (candles, next_from) = match from {
        Some(from) => {
            let mut page = store.candles(&asset, from, to, limit + 1).await?;
            let next = (page.len() > limit as usize)
                .then(|| page.pop().map(|c| format_ms(c.open_time)))
                .flatten();
            (page, next)
        }
        None => (store.latest_candles(&asset, to, limit).await?, None),
    };
    if candles.is_empty() && store.latest_candles(&asset, i64::MAX, 1).await?.is_empty() {
        return Err(ApiError::UnknownAsset { asset });
    }
    Ok(Json(CandlesPage {
        asset,
        candles: candles.into_iter().map(CandleDto::from).collect(),
        next_from,
    }))
}

/// Volatility forecasts for an asset at its latest stored hour: `POST /v1/forecast/volatility`'s
/// answer on the latest `history_hours` stored candles.
#[utoipa::path(
    get,
    path = "/v1/assets/{asset}/forecast/volatility",
    tag = FORECAST_TAG,
    params(("asset" = String, Path, description = "Asset id, e.g. BTCUSDT"), VolatilityQuery),
    responses(
        (status = 200, description = "The forecasts, one item", body = VolatilityResponse),
        (status = 400, description = "A query parameter is unknown or does not parse", body = ErrorBody),
        (status = 404, description = "No stored candle of this asset", body = ErrorBody),
        (status = 422, description = "An unknown horizon", body = ErrorBody),
        (status = 429, description = "Inference queue full; see Retry-After", body = ErrorBody),
        (status = 503, description = "Stale market data (`stale_market_data`), stored candles that cannot be forecast (`stored_data_unusable`: too few hours, too many missing, a halted market), model not ready, store unavailable, or timeout", body = ErrorBody),
    )
)]
pub async fn volatility(
    State(state): State<AppState>,
    ApiPath(asset): ApiPath<String>,
    ApiQuery(q): ApiQuery<VolatilityQuery>,
) -> Result<Json<VolatilityResponse>, ApiError> {
    let horizons = horizons(q.horizons.as_deref())?;
    // The request's own mistakes first: not a 503 a client retries while the model loads.
    check_asset(&asset)?;
    let serving = state.serving()?;
    let wanted = horizon_indices(&serving.info, horizons.as_deref())?;
    let forecast = stored_forecast(&state, &serving, &asset).await?;
    let (prep, pred, _) = forecast.as_ref();
    Ok(Json(volatility_response(
        &serving.info,
        &wanted,
        std::iter::once((prep, pred)),
    )))
}

/// Liquidity-shortage forecasts for an asset at its latest stored hour:
/// `POST /v1/forecast/liquidity`'s answer on the latest `history_hours` stored candles.
#[utoipa::path(
    get,
    path = "/v1/assets/{asset}/forecast/liquidity",
    tag = FORECAST_TAG,
    params(("asset" = String, Path, description = "Asset id, e.g. BTCUSDT"), LiquidityQuery),
    responses(
        (status = 200, description = "The forecasts, one item", body = LiquidityResponse),
        (status = 400, description = "A query parameter is unknown or does not parse", body = ErrorBody),
        (status = 404, description = "No stored candle of this asset", body = ErrorBody),
        (status = 422, description = "An unknown horizon, or a setting out of range", body = ErrorBody),
        (status = 429, description = "Inference queue full; see Retry-After", body = ErrorBody),
        (status = 503, description = "Stale market data (`stale_market_data`), stored candles that cannot be forecast (`stored_data_unusable`: too few hours, too many missing, a halted market), model not ready, store unavailable, or timeout", body = ErrorBody),
    )
)]
pub async fn liquidity(
    State(state): State<AppState>,
    ApiPath(asset): ApiPath<String>,
    ApiQuery(q): ApiQuery<LiquidityQuery>,
) -> Result<Json<LiquidityResponse>, ApiError> {
    let horizons = horizons(q.horizons.as_deref())?;
    // The query's mistakes first: 422 while the model loads too, not a 503 a client retries.
    check_asset(&asset)?;
    let sale = sale_size(&state, q.sale_size_usd)?;
    let serving = state.serving()?;
    let wanted = horizon_indices(&serving.info, horizons.as_deref())?;
    let forecast = stored_forecast(&state, &serving, &asset).await?;
    let (prep, pred, _) = forecast.as_ref();
    liquidity_response(&serving.info, &wanted, sale, std::iter::once(("", prep, pred))).map(Json)
}

/// Risk parameters for an asset at its latest stored hour, with their derivation:
/// `POST /v1/risk/parameters`'s answer on the latest `history_hours` stored candles.
#[utoipa::path(
    get,
    path = "/v1/assets/{asset}/risk",
    tag = RISK_TAG,
    params(("asset" = String, Path, description = "Asset id, e.g. BTCUSDT"), RiskQuery),
    responses(
        (status = 200, description = "The parameters, one item", body = RiskResponse),
        (status = 400, description = "A query parameter is unknown or does not parse", body = ErrorBody),
        (status = 404, description = "No stored candle of this asset", body = ErrorBody),
        (status = 422, description = "A setting out of range, or `max_step` without a previous value", body = ErrorBody),
        (status = 429, description = "Inference queue full; see Retry-After", body = ErrorBody),
        (status = 503, description = "Stale market data (`stale_market_data`), stored candles that cannot be forecast or priced (`stored_data_unusable`: too few hours, too many missing, a halted market, a sale's illiquidity unknown at its liquidity horizon), model not ready, store unavailable, or timeout", body = ErrorBody),
    )
)]
pub async fn risk(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiPath(asset): ApiPath<String>,
    ApiQuery(q): ApiQuery<RiskQuery>,
) -> Result<(HeaderMap, Json<RiskResponse>), ApiError> {
    let (resp, record) = asset_risk(&state, caller_id(caller), logged::ASSET_RISK, asset, &q).await?;
    Ok((id_header(record.ids()), Json(resp)))
}

/// The asset route's answer on the latest stored candles, logged as a decision on `route`.
///
/// # Errors
/// The request's first problem, the store's, the model's or the log's.
pub async fn asset_risk(
    state: &AppState,
    caller: Option<String>,
    route: &'static str,
    asset: String,
    q: &RiskQuery,
) -> Result<(RiskResponse, crate::audit::Logged), ApiError> {
    let previous =
        (q.previous_liquidation_threshold.is_some() || q.previous_max_ltv.is_some()).then_some(Previous {
            liquidation_threshold: q.previous_liquidation_threshold,
            max_ltv: q.previous_max_ltv,
        });
    let asked = RiskRequest {
        alpha: q.alpha,
        tau_hours: q.tau_hours,
        tau_user_hours: q.tau_user_hours,
        bonus: q.bonus,
        bonus_margin: q.bonus_margin,
        sale_size_usd: q.sale_size_usd,
        max_step: q.max_step,
        ..RiskRequest::default()
    };
    // The query's mistakes first: 422 while the model loads too, not a 503 a client retries.
    let s = settings(&asked, state)?;
    check_previous(previous.as_ref(), |name| format!("previous_{name}"))?;
    check_bound(q.max_step, [(String::new(), previous.as_ref())])?;
    check_asset(&asset)?;
    let serving = state.serving()?;
    let forecast = stored_forecast(state, &serving, &asset).await?;
    let (prep, pred, inputs) = forecast.as_ref();
    // What the stored window cannot support (an illiquidity unknown at the sale's horizon, a
    // non-finite drawdown) is the store's fault, not the query's.
    let item = recommend_watched(state, &serving, &s, "", prep, pred, &inputs.candles, previous)
        .map_err(|e| of_the_store(&asset, e))?;
    let resp = RiskResponse {
        model: serving.info.reference(),
        items: vec![item],
    };
    with_ids(state, &serving, caller, route, resp, |items| {
        items
            .iter()
            .map(|item| ToLog {
                asset: item.asset.clone(),
                request: serde_json::to_string(&RiskRequest {
                    asset: Some(asset.clone()),
                    previous,
                    ..asked.clone()
                })
                .unwrap_or_default(),
                inputs: inputs.clone(),
                answer: serde_json::to_string(item).unwrap_or_default(),
            })
            .collect()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the store's window lacks is the store's (503), but a full queue stays a full queue
    /// (429 with its Retry-After): mapped by a first version, a loaded service answered 503
    /// `stored_data_unusable` "the inference queue is full".
    #[test]
    fn only_the_windows_faults_are_the_stores() {
        let short = of_the_store(
            "A",
            ApiError::TooFewCandles {
                field: "candles".into(),
                got: 100,
                need: 889,
            },
        );
        assert_eq!(short.status_and_code().0, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            short
                .to_string()
                .starts_with("the stored candles of A cannot be served: "),
            "{short}"
        );
        assert_eq!(short.field(), None);
        let full = of_the_store(
            "A",
            ApiError::QueueFull {
                retry_after: Duration::from_secs(3),
            },
        );
        assert!(matches!(full, ApiError::QueueFull { .. }), "{full}");
        let timeout = of_the_store("A", ApiError::NotReady);
        assert!(matches!(timeout, ApiError::NotReady), "{timeout}");
    }

    #[test]
    fn staleness_counts_from_the_close() {
        let open = 10 * HOUR_MS;
        assert_eq!(age_ms(open, 11 * HOUR_MS), 0);
        assert_eq!(age_ms(open, 13 * HOUR_MS), 2 * HOUR_MS);
        let two_hours = Duration::from_secs(7200);
        assert!(!is_stale(age_ms(open, 13 * HOUR_MS), two_hours));
        assert!(is_stale(age_ms(open, 13 * HOUR_MS + 1), two_hours));
        assert!(!is_stale(i64::MAX, Duration::MAX));
    }

    #[test]
    fn horizons_and_times_parse_or_name_their_parameter() {
        assert_eq!(horizons(Some("4, 24")).ok(), Some(Some(vec![4, 24])));
        assert_eq!(horizons(None).ok(), Some(None));
        assert!(
            matches!(horizons(Some("4,x")), Err(ApiError::InvalidQuery { field, .. }) if field == "horizons")
        );
        assert_eq!(
            time_param("from", "1704067200000", Bound::Start).ok(),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            time_param("from", "2024-01-01", Bound::Start).ok(),
            Some(1_704_067_200_000)
        );
        assert!(
            matches!(time_param("to", "yesterday", Bound::End), Err(ApiError::InvalidQuery { field, .. }) if field == "to")
        );
        // Bounded to 1970 .. 9999, the ends included.
        assert_eq!(time_param("from", "0", Bound::Start).ok(), Some(0));
        // Unix seconds (or a year) where milliseconds are asked for: refused, saying so.
        for text in ["1704067200", "2024", "1", "99999999999"] {
            let e = time_param("from", text, Bound::Start).unwrap_err();
            assert!(e.to_string().contains("before 1973-03-03"), "{text}: {e}");
        }
        assert_eq!(
            time_param("from", "100000000000", Bound::Start).ok(),
            Some(100_000_000_000)
        );
        assert_eq!(
            time_param("to", "9999-12-31", Bound::End).ok(),
            Some(LAST_TIME_MS)
        );
        for (field, text) in [
            ("from", "1900-01-01T00:00:00Z"),
            ("from", "1969-12-31"),
            ("to", "9223372036854775807"),
            ("to", "253402300800000"),
        ] {
            assert!(
                matches!(time_param(field, text, Bound::Start), Err(ApiError::InvalidQuery { field: f, .. }) if f == field),
                "{text}"
            );
        }
    }
}
