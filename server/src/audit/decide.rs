//! What the risk routes call: their answers logged as decisions, and the `x-decision-id` header.

use super::{DecisionModel, Inputs, Pending, new_id};

/// One answer to log: the request for its asset (candles left out), its candles and the answer.
#[derive(Debug)]
pub struct ToLog {
    /// Asset.
    pub asset: String,
    /// The request for this asset, candles left out, JSON.
    pub request: String,
    /// The candles.
    pub inputs: Inputs,
    /// The answer, without its decision id, JSON.
    pub answer: String,
}

/// Header carrying the decision ids of an answer (comma-separated for a batch).
pub const DECISION_ID_HEADER: axum::http::HeaderName = axum::http::HeaderName::from_static("x-decision-id");

/// What [`log_decisions`] did: the records' ids, and the time they say the answer was decided.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The decision ids, one per item (`None` without a log).
    pub ids: Option<Vec<String>>,
    /// The records' `at`, Unix ms (the time of the call without a log): what an answer that
    /// states when it was decided states, so that its record says the same.
    pub at: i64,
}

impl Logged {
    /// The ids, as [`id_header`] takes them.
    #[must_use]
    pub fn ids(&self) -> Option<&[String]> {
        self.ids.as_deref()
    }
}

/// Appends one decision per item `items` makes, made by `info` for `caller` on `route`, and
/// returns their ids and time. Without a log (no store, or `--decision-log false`) `items` is
/// not called: the records cost nothing then.
///
/// # Errors
/// [`crate::error::ApiError::DecisionLog`]: the answer must then be withheld.
pub async fn log_decisions(
    state: &crate::state::AppState,
    info: &crate::model_info::ModelInfo,
    caller: Option<String>,
    route: &'static str,
    items: impl FnOnce() -> Vec<ToLog>,
) -> Result<Logged, crate::error::ApiError> {
    let at = state.now_ms();
    let Some(log) = state.decisions() else {
        return Ok(Logged { ids: None, at });
    };
    let items = items();
    let model = DecisionModel {
        id: info.metadata.id.clone(),
        hash: info.hash.clone(),
        policy: info.policy.clone(),
    };
    let defaults = state.settings().defaults;
    let model_dir = info.dir.display().to_string();
    let pending: Vec<Pending> = items
        .into_iter()
        .map(|i| Pending {
            id: new_id(at),
            at,
            caller: caller.clone(),
            route,
            asset: i.asset,
            request: i.request,
            defaults,
            inputs: i.inputs,
            model: model.clone(),
            model_dir: model_dir.clone(),
            answer: i.answer,
        })
        .collect();
    let ids = pending.iter().map(|p| p.id.clone()).collect();
    log.append(pending).await?;
    Ok(Logged { ids: Some(ids), at })
}

/// The `x-decision-id` header of `ids` (nothing without ids).
#[must_use]
pub fn id_header(ids: Option<&[String]>) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    if let Some(v) = ids.and_then(|ids| axum::http::HeaderValue::from_str(&ids.join(",")).ok()) {
        h.insert(DECISION_ID_HEADER, v);
    }
    h
}
