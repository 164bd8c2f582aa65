//! The risk parameters as risk-oracle update records: `POST /v1/risk/updates` (the body of
//! `POST /v1/risk/parameters`) and `GET /v1/assets/{asset}/risk/updates` (the query of
//! `GET /v1/assets/{asset}/risk`). Each asset's answer is logged as a decision, whose id is the
//! updates' `reference_id`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};

use crate::audit::{Logged, id_header, routes as logged};
use crate::auth::Caller;
use crate::dto::assets::RiskQuery;
use crate::dto::oracle::UpdatesResponse;
use crate::dto::{RiskRequest, RiskResponse};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::RISK_TAG;
use crate::routes::assets::asset_risk;
use crate::routes::risk_parameters::{caller_id, decided};
use crate::state::AppState;

/// The updates of `resp`, stamped with the time its decisions record (read before their
/// append: a clock read after it, once the commit had waited, stamped a time no record holds).
fn updates(resp: &RiskResponse, record: &Logged) -> UpdatesResponse {
    UpdatesResponse::of(&resp.items, &resp.model, record.at.div_euclid(1000))
}

/// The parameters of one asset or a batch as update records (liquidation threshold, max LTV,
/// liquidation bonus), each referring to its decision.
#[utoipa::path(
    post,
    path = "/v1/risk/updates",
    tag = RISK_TAG,
    request_body = RiskRequest,
    responses(
        (status = 200, description = "Three updates per asset", body = UpdatesResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body, batch or candle array too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid input, as `POST /v1/risk/parameters`", body = ErrorBody),
        (status = 429, description = "Inference queue full; see Retry-After", body = ErrorBody),
        (status = 503, description = "Model not ready, decision log unavailable, or timeout", body = ErrorBody),
    )
)]
pub async fn post_updates(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiJson(body): ApiJson<RiskRequest>,
) -> Result<(HeaderMap, Json<UpdatesResponse>), ApiError> {
    let serving = state.serving()?;
    let (resp, record) = decided(&state, &serving, caller_id(caller), logged::UPDATES, body).await?;
    Ok((id_header(record.ids()), Json(updates(&resp, &record))))
}

/// One stored asset's parameters as update records.
#[utoipa::path(
    get,
    path = "/v1/assets/{asset}/risk/updates",
    tag = RISK_TAG,
    params(("asset" = String, Path, description = "Asset id, e.g. BTCUSDT"), RiskQuery),
    responses(
        (status = 200, description = "Three updates", body = UpdatesResponse),
        (status = 400, description = "A query parameter is unknown or does not parse", body = ErrorBody),
        (status = 404, description = "No stored candle of this asset", body = ErrorBody),
        (status = 422, description = "As `GET /v1/assets/{asset}/risk`", body = ErrorBody),
        (status = 429, description = "Inference queue full; see Retry-After", body = ErrorBody),
        (status = 503, description = "Stale market data, stored candles that cannot be forecast or priced (`stored_data_unusable`, as `GET /v1/assets/{asset}/risk`), model not ready, store or decision log unavailable, or timeout", body = ErrorBody),
    )
)]
pub async fn asset_updates(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiPath(asset): ApiPath<String>,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<RiskQuery>,
) -> Result<(HeaderMap, Json<UpdatesResponse>), ApiError> {
    let (resp, record) = asset_risk(&state, caller_id(caller), logged::ASSET_UPDATES, asset, &q).await?;
    Ok((id_header(record.ids()), Json(updates(&resp, &record))))
}
