//! `POST /v1/anomaly/scan` and `GET /v1/assets/{asset}/anomalies`: the anomaly detector's
//! scores, flags and reasons on posted candles (and pool snapshots) or on stored candles.

use axum::Json;
use axum::extract::State;
use volcast_core::time::{Bound, HOUR_MS};

use crate::anomaly::{check_pool, min_candles, scan_batch, scan_data_from, store_scan};
use crate::dto::anomaly::{AnomaliesQuery, AssetScan, DetectorRef, ScanItem, ScanRequest, ScanResponse};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::inputs::{check_asset_id, checked_candles, shape};
use crate::routes::MARKET_TAG;
use crate::routes::assets::time_param;
use crate::state::AppState;
use volcast_store::CandleStore as _;

/// Longest window the asset route scans, hours.
pub const MAX_RANGE_HOURS: i64 = 90 * 24;
/// The asset route's window when `from` is not given, hours.
pub const DEFAULT_RANGE_HOURS: i64 = 7 * 24;

/// Scores every hour of one asset's candles (or a batch's), and of its DEX pool's snapshots
/// when given, for how unusual the activity is against that market's own recent behaviour and
/// the whole market's; flags the hours above the detector's calibrated threshold, each with its
/// top drivers. The first `warm-up` hours of each series only build the baselines.
#[utoipa::path(
    post,
    path = "/v1/anomaly/scan",
    tag = MARKET_TAG,
    request_body = ScanRequest,
    responses(
        (status = 200, description = "Scores, flags and drivers, one item per asset", body = ScanResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body, batch or candle array too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid input: a bad candle (SPEC's rules), too few candles for the warm-up, a bad pool snapshot", body = ErrorBody),
        (status = 503, description = "No anomaly detector loaded (`detector_unavailable`), or timeout", body = ErrorBody),
    )
)]
pub async fn scan(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ScanRequest>,
) -> Result<Json<ScanResponse>, ApiError> {
    let scorer = state.anomaly()?;
    if body.items.is_some() && body.pool.is_some() {
        return Err(ApiError::InvalidShape(
            "with `items`, give `pool` inside each item".into(),
        ));
    }
    let single_pool = body.pool;
    let items = shape(
        (body.asset, body.candles),
        body.items,
        state.settings().max_items,
        |asset, candles| ScanItem {
            asset,
            candles,
            pool: None,
        },
    )?;
    let limits = state.settings().limits;
    let need = min_candles(&scorer);
    let mut checked = Vec::with_capacity(items.len());
    for (prefix, item) in items {
        check_asset_id(&format!("{prefix}asset"), &item.asset)?;
        let candles = checked_candles(&item.candles, limits, &format!("{prefix}candles"), need)?;
        let pool = match item.pool.as_deref().or(single_pool.as_deref()) {
            Some(p) => Some(check_pool(&format!("{prefix}pool"), p)?),
            None => None,
        };
        checked.push((item.asset, candles, pool));
    }
    let detector = DetectorRef::of(&scorer);
    let slot = state.scan_slot().await?;
    let items = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        scan_batch(&scorer, &checked)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("anomaly scan task: {e}")))?;
    Ok(Json(ScanResponse { detector, items }))
}

/// The flagged hours of an asset's stored candles between `from` and `to` (every scored hour
/// with `all=true`), with their drivers, against the market of every stored asset over the same
/// hours when five or more are stored (`market_context: store`). The detector's warm-up is read
/// from before `from`; hours without a week of stored history before them are not scored.
#[utoipa::path(
    get,
    path = "/v1/assets/{asset}/anomalies",
    tag = MARKET_TAG,
    params(("asset" = String, Path, description = "Asset id, e.g. BTCUSDT"), AnomaliesQuery),
    responses(
        (status = 200, description = "The asset's scan over the window", body = AssetScan),
        (status = 400, description = "A query parameter is unknown or does not parse", body = ErrorBody),
        (status = 404, description = "No stored candle of this asset", body = ErrorBody),
        (status = 422, description = "`from` after `to`, or a window longer than 90 days", body = ErrorBody),
        (status = 503, description = "No anomaly detector loaded, or the store cannot be read", body = ErrorBody),
    )
)]
pub async fn asset_anomalies(
    State(state): State<AppState>,
    ApiPath(asset): ApiPath<String>,
    ApiQuery(q): ApiQuery<AnomaliesQuery>,
) -> Result<Json<AssetScan>, ApiError> {
    check_asset_id("asset", &asset)?;
    let scorer = state.anomaly()?;
    let store = state.store()?;
    let to = match q.to.as_deref() {
        Some(t) => time_param("to", t, Bound::End)?,
        None => match store.latest_candles(&asset, i64::MAX, 1).await?.first() {
            Some(c) => c.open_time,
            None => return Err(ApiError::UnknownAsset { asset }),
        },
    };
    let from = match q.from.as_deref() {
        Some(f) => time_param("from", f, Bound::Start)?,
        // The 7 days of hours up to `to`'s: a date's `to` is its last millisecond, and the
        // week back from it began an hour in (167 hours).
        None => to.div_euclid(HOUR_MS) * HOUR_MS - (DEFAULT_RANGE_HOURS - 1) * HOUR_MS,
    };
    super::assets::check_from_to(from, to)?;
    if to - from >= MAX_RANGE_HOURS * HOUR_MS {
        return Err(ApiError::InvalidValue {
            field: "from".into(),
            message: format!("the window is longer than {} days", MAX_RANGE_HOURS / 24),
        });
    }
    // The history before `from`: what each hour's verdict reads (the warm-up, the directions'
    // lookback and four weeks of baselines, so an hour's score barely depends on the `from`
    // asked) and what its day's threshold scale reads (every stored asset's hours of the 90 days
    // before its block of days, and their baselines): [`scan_data_from`].
    // A slot before reading: the market context and the scales are every stored asset's hours.
    let slot = state.scan_slot().await?;
    let start = scan_data_from(&scorer, from);
    let limit = u32::try_from((to - start) / HOUR_MS + 1).unwrap_or(u32::MAX);
    let candles = store.candles(&asset, start, to, limit).await?;
    if candles.is_empty() && store.latest_candles(&asset, i64::MAX, 1).await?.is_empty() {
        return Err(ApiError::UnknownAsset { asset });
    }
    // Every other stored asset over the same hours: the market, when there are enough of
    // them, and the daily threshold scales either way.
    let mut others = Vec::new();
    for (other, _) in store.counts(start, to).await?.iter().filter(|(a, _)| *a != asset) {
        others.push(store.candles(other, start, to, limit).await?);
    }
    let all = q.all.unwrap_or(false);
    let scan = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        store_scan(
            &scorer,
            asset,
            &candles,
            &others,
            (from, to),
            all,
            state.past_scales(),
        )
    })
    .await
    .map_err(|e| ApiError::Internal(format!("anomaly scan task: {e}")))?;
    Ok(Json(scan))
}
