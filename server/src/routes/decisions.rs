//! The decision log's routes: the signing keys, a decision by id, pages of the log (export),
//! and a decision's replay.

use axum::Json;
use axum::extract::State;
use volcast_core::time::{Bound, format_ms};
use volcast_store::{DecisionRow, DecisionStore as _};

use crate::audit::DecisionBody;
use crate::audit::replay::replay as replay_decision;
use crate::dto::audit::{
    ChainHead, DecisionPage, DecisionQuery, DecisionRecord, KeysResponse, ReplayResponse, SigningKeyDto,
};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::assets::time_param;
use crate::state::AppState;

/// OpenAPI tag of these routes.
pub const AUDIT_TAG: &str = "audit";

/// Most records per page.
pub const MAX_PAGE: u32 = 1000;

/// The record of `row`, parsed where its text parses: an altered record is returned as stored,
/// for `verify` to name, never refused with the page around it.
fn record(row: DecisionRow) -> DecisionRecord {
    let decision = serde_json::from_str::<DecisionBody>(&row.body)
        .inspect_err(|e| tracing::warn!(seq = row.seq, id = %row.id, "a decision record does not parse: {e}"))
        .ok();
    DecisionRecord {
        seq: row.seq,
        id: row.id,
        at: row.at,
        asset: row.asset,
        hash: row.hash,
        signature: row.signature,
        signer: row.signer,
        body: row.body,
        decision,
    }
}

async fn find(state: &AppState, id: &str) -> Result<DecisionRow, ApiError> {
    state
        .store()?
        .decision(id)
        .await?
        .ok_or_else(|| ApiError::UnknownDecision { id: id.to_owned() })
}

/// The decision log's signing keys (Ed25519) and the chain's end.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = AUDIT_TAG,
    responses(
        (status = 200, description = "The public keys and the head", body = KeysResponse),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub async fn keys(State(state): State<AppState>) -> Result<Json<KeysResponse>, ApiError> {
    let store = state.store()?;
    let current = state
        .decisions()
        .map(|d| (d.signer().key_id.clone(), d.signer().public_hex.clone()));
    let keys = store
        .signing_keys()
        .await?
        .into_iter()
        .filter(|(key_id, public_key, _)| {
            // A row pairing an id with another key (the table altered) names no key: left out,
            // as `verify` and replay leave it.
            let named = crate::audit::key_named(key_id, public_key);
            if !named {
                tracing::error!(key_id = %key_id, "a signing_keys row holds a key its id does not name: left out");
            }
            named
        })
        .map(|(key_id, public_key, first_used)| SigningKeyDto {
            current: current
                .as_ref()
                .is_some_and(|(id, public)| *id == key_id && *public == public_key),
            key_id,
            algorithm: "Ed25519".into(),
            public_key,
            first_used: format_ms(first_used),
        })
        .collect();
    let head = store.head().await?.map(|(seq, hash)| ChainHead { seq, hash });
    Ok(Json(KeysResponse { keys, head }))
}

/// One decision: the exact signed record and what it says.
#[utoipa::path(
    get,
    path = "/v1/decisions/{id}",
    tag = AUDIT_TAG,
    params(("id" = String, Path, description = "Decision id (`decision_id` of an answer)")),
    responses(
        (status = 200, description = "The record", body = DecisionRecord),
        (status = 400, description = "The id in the path is not UTF-8 (`invalid_query`)", body = ErrorBody),
        (status = 404, description = "No such decision", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub async fn decision(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DecisionRecord>, ApiError> {
    Ok(Json(record(find(&state, &id).await?)))
}

/// Pages through the decision log in chain order (the export an auditor verifies).
#[utoipa::path(
    get,
    path = "/v1/decisions",
    tag = AUDIT_TAG,
    params(DecisionQuery),
    responses(
        (status = 200, description = "A page of records", body = DecisionPage),
        (status = 400, description = "A query parameter is unknown or does not parse", body = ErrorBody),
        (status = 422, description = "`limit` outside 1 to 1000, `from` after `to`, or `asset` not a valid asset id", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub async fn decisions(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DecisionQuery>,
) -> Result<Json<DecisionPage>, ApiError> {
    let from = q
        .from
        .as_deref()
        .map_or(Ok(i64::MIN), |t| time_param("from", t, Bound::Start))?;
    let to =
        q.to.as_deref()
            .map_or(Ok(i64::MAX), |t| time_param("to", t, Bound::End))?;
    if let Some(asset) = q.asset.as_deref() {
        crate::inputs::check_asset_id("asset", asset)?;
    }
    super::assets::check_from_to(from, to)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::OutOfRange {
            field: "limit".into(),
            value: f64::from(limit),
            range: "[1, 1000]",
        });
    }
    // One more than the page, to know whether another page follows. The first page starts at
    // the lowest sequence number stored, as `verify` reads the store: a row slipped in below
    // the chain (seq 0 or negative) is exported, and fails the check, instead of hidden.
    let mut rows = state
        .store()?
        .decisions(q.asset.as_deref(), from, to, q.after, limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_after = rows.last().filter(|_| more).map(|r| r.seq);
    let decisions = rows.into_iter().map(record).collect();
    Ok(Json(DecisionPage {
        decisions,
        next_after,
    }))
}

/// Recomputes a decision from its recorded inputs (request, candles, defaults, policy) with its
/// recorded artifact, and returns both answers.
#[utoipa::path(
    post,
    path = "/v1/decisions/{id}/replay",
    tag = AUDIT_TAG,
    params(("id" = String, Path, description = "Decision id")),
    responses(
        (status = 200, description = "Both answers and whether they are identical", body = ReplayResponse),
        (status = 400, description = "The id in the path is not UTF-8 (`invalid_query`)", body = ErrorBody),
        (status = 404, description = "No such decision", body = ErrorBody),
        (status = 429, description = "The recomputation waits for the service's own capacity: the inference queue is full (`queue_full`) or both stress simulation slots are taken (`stress_busy`); see Retry-After", body = ErrorBody),
        (status = 503, description = "Its artifact or inputs are gone or altered, or this build refuses its recorded request (a check added since it was answered) (`replay_unavailable`), or the store is unavailable", body = ErrorBody),
    )
)]
pub async fn replay(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReplayResponse>, ApiError> {
    let row = find(&state, &id).await?;
    let r = replay_decision(&state, &row).await?;
    Ok(Json(ReplayResponse {
        decision_id: row.id,
        identical: r.identical(),
        model: r.body.model,
        recorded: r.body.answer,
        replayed: r.answer,
    }))
}
