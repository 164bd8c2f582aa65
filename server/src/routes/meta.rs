//! `GET /v1/model`, `/healthz`, `/readyz` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::dto::anomaly::{DetectorRef, ServedDetector};
use crate::dto::validation::ValidationResponse;
use crate::dto::{Health, ModelCard};
use crate::error::{ApiError, ErrorBody};
use crate::queue::WorkerState;
use crate::routes::{FORECAST_TAG, OPS_TAG};
use crate::state::AppState;

/// Answer of `POST /v1/admin/reload`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReloadResponse {
    /// The model served before.
    pub old: String,
    /// The model served now.
    pub new: String,
}

/// Loads the artifact afresh (following its `default` pointer) and serves it, as SIGHUP does;
/// a failed load keeps the old model.
#[utoipa::path(
    post,
    path = "/v1/admin/reload",
    tag = OPS_TAG,
    responses(
        (status = 200, description = "The model now served", body = ReloadResponse),
        (status = 503, description = "The artifact could not be loaded (the old one is still served), or this service has no artifact path to reload; `model_not_ready` while the first model still loads; `timeout` when the reload outlasted the request timeout (waiting for the daily recalibration's swap, or a slow load): it still happens, only the waiting is given up", body = ErrorBody),
    )
)]
pub async fn reload(State(state): State<AppState>) -> Result<Json<ReloadResponse>, ApiError> {
    let Some((path, options)) = state.reload_target().cloned() else {
        // The first model is still loading (its path is the reload target once it serves):
        // not a failed reload of an old model that is not there.
        state.serving()?;
        return Err(ApiError::ReloadFailed(
            "this service was started without an artifact path".into(),
        ));
    };
    let metrics = std::sync::Arc::clone(state.metrics());
    // In a task of its own: a reload waiting for the daily recalibration's swap, or loading
    // longer than the request timeout, still happens (and is counted) when the request is
    // answered 503 `timeout`; only the waiting is given up.
    let reloading = tokio::spawn({
        let (state, path) = (state.clone(), path.clone());
        async move { crate::loading::reload(&state, &path, options, &metrics).await }
    });
    let (old, new) = reloading
        .await
        .map_err(crate::loading::LoadError::from)
        .and_then(|r| r)
        .map_err(|e| {
            // The directory goes to the server's log only, as a replay's does: the caller
            // learns what failed, not where the service keeps its artifacts.
            tracing::warn!(artifacts = %path.display(), error = %e, "reload failed");
            let dir = path.display().to_string();
            let message = e.to_string();
            ApiError::ReloadFailed(if dir.is_empty() {
                message
            } else {
                message.replace(&dir, "<artifacts>")
            })
        })?;
    Ok(Json(ReloadResponse { old, new }))
}

/// The model card: id, hash, training data range, validation metrics, features.
#[utoipa::path(
    get,
    path = "/v1/model",
    tag = FORECAST_TAG,
    responses(
        (status = 200, description = "The served model", body = ModelCard),
        (status = 503, description = "Model not ready", body = ErrorBody),
    )
)]
pub async fn model(State(state): State<AppState>) -> Result<Json<ModelCard>, ApiError> {
    let serving = state.serving()?;
    let mut card = serving.info.card();
    let settings = state.settings().anomaly;
    card.anomaly_detector = serving.anomaly.map(|sc| ServedDetector {
        detector: DetectorRef::of(&sc),
        action: settings.action.name().into(),
        window_hours: settings.window_hours,
    });
    Ok(Json(card))
}

/// `GET /v1/model/validation`'s query.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ValidationQuery {
    /// One asset's figures instead of the pooled ones.
    pub asset: Option<String>,
}

/// How the served model's daily forecasts fared once their windows passed: the forecast ledger
/// over the last 30 and 120 days of origins, pooled over assets or for one asset.
#[utoipa::path(
    get,
    path = "/v1/model/validation",
    tag = FORECAST_TAG,
    params(ValidationQuery),
    responses(
        (status = 200, description = "Skill and calibration over trailing windows", body = ValidationResponse),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 422, description = "`asset` is not a valid asset id", body = ErrorBody),
        (status = 503, description = "Model not ready, or the store unavailable", body = ErrorBody),
    )
)]
pub async fn validation(
    State(state): State<AppState>,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<ValidationQuery>,
) -> Result<Json<ValidationResponse>, ApiError> {
    if let Some(asset) = q.asset.as_deref() {
        crate::inputs::check_asset_id("asset", asset)?;
    }
    let serving = state.serving()?;
    let now = state.now_ms();
    let windows = crate::ledger::windows(&state, now, q.asset.as_deref()).await?;
    Ok(Json(ValidationResponse {
        model: serving.info.reference(),
        now: volcast_core::time::format_ms(now),
        asset: q.asset,
        windows,
    }))
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = OPS_TAG,
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        model: state.serving().ok().map(|s| s.info.reference()),
    })
}

/// Readiness: 200 once the model is loaded and warm, 503 before.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = OPS_TAG,
    responses(
        (status = 200, description = "Ready (`status: ready`), or serving the gate's fallback policy (`status: degraded`, the reason in `model.policy`)", body = Health),
        (status = 503, description = "Loading (`status: loading`), or the model answers nothing: its forward pass has run longer than three request timeouts and a second (`status: stuck`) or its worker has ended (`status: stopped`)", body = Health),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.serving() {
        Ok(s) if let Some(status) = unanswered(&state, &s) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: status.into(),
                model: Some(s.info.reference()),
            }),
        )
            .into_response(),
        // Still 200 on the gate's fallback: the service answers, on HAR's policy.
        Ok(s) => Json(Health {
            status: if s.info.policy.is_fallback() {
                "degraded"
            } else {
                "ready"
            }
            .into(),
            model: Some(s.info.reference()),
        })
        .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "loading".into(),
                model: None,
            }),
        )
            .into_response(),
    }
}

/// Why the served model answers nothing (`stopped`, `stuck`), or None while it answers.
fn unanswered(state: &AppState, s: &crate::state::Serving) -> Option<&'static str> {
    // At least a second: a short request timeout must not turn one slow pass under load into
    // every replica leaving the balancer at once.
    let stuck_after = (3 * state.settings().request_timeout).max(std::time::Duration::from_secs(1));
    match s.queue.worker_state() {
        WorkerState::Stopped => Some("stopped"),
        WorkerState::Running(Some(busy)) if busy > stuck_after => Some("stuck"),
        WorkerState::Running(_) => None,
    }
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = OPS_TAG,
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    // The follower's gauges as of this scrape (its status is in memory).
    if let Some(follow) = state.follow_status() {
        state.metrics().set_follower(&follow.snapshot());
    }
    // Ready as `/readyz` says, as of this scrape: 0 also while the worker is stuck or stopped
    // (it stayed 1 once the model was loaded, and an alert on it missed those).
    let ready = state.serving().is_ok_and(|s| unanswered(&state, &s).is_none());
    state.metrics().model_ready.set(i64::from(ready));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics().render(),
    )
        .into_response()
}
