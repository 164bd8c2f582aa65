//! The access control in the request path: the middleware that checks each request's key
//! against its route's scope, and the task that keeps the keys in force current.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Caller, KEY_REFRESH};
use crate::state::AppState;

/// Middleware: lets a request through with its [`Caller`] when its route is open or its key has
/// the scope the route needs; answers 401, 403 or 429 otherwise.
pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let access = state.access();
    let scope = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| access.scope_of(p.as_str()));
    let caller = match scope {
        None => Caller::default(),
        Some(scope) => {
            let mut headers = req.headers().get_all(header::AUTHORIZATION).iter();
            let header = headers.next().map(axum::http::HeaderValue::as_bytes);
            // One credential per request: with two, the first was checked and the other
            // ignored, so a proxy's added header could be sent around (or a key smuggled past
            // it), depending on the order.
            let checked = if headers.next().is_some() && access.required() {
                Err(crate::error::ApiError::Unauthorized(
                    "send one Authorization header, not several".into(),
                ))
            } else {
                access.check(scope, header, Instant::now())
            };
            match checked {
                Ok(c) => c,
                Err(e) => {
                    let metrics = state.metrics();
                    metrics
                        .auth_rejections
                        .get_or_create(&crate::metrics::AuthLabels {
                            status: e.status_and_code().0.as_u16(),
                        })
                        .inc();
                    return e.into_response();
                }
            }
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The longest one read of the keys may take before the watcher gives it up and warns.
const KEY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads the keys from the store every [`KEY_REFRESH`] (each read bounded by
/// 5 s); logs when the server turns from open to keyed.
pub async fn watch_keys(state: AppState) {
    use volcast_store::KeyStore as _;
    let mut tick = tokio::time::interval(KEY_REFRESH);
    // After a read that took long (one given up), the next waits a full period, not a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(store) = state.store() else { return };
        // Bounded: a read left hanging (a connection whose peer is gone, with no reset) would
        // otherwise stop the watcher for good, and with it every revocation.
        match crate::within(KEY_READ_TIMEOUT, store.keys()).await {
            Ok(rows) => {
                let before = state.access().set_keys(&rows);
                if !before && state.access().required() {
                    tracing::info!(
                        keys = rows.len(),
                        "API keys found: every route but the open ones now needs one"
                    );
                }
                if before && rows.is_empty() {
                    tracing::warn!(
                        "the store holds no API key any more: every route but the open ones refuses \
                         (401) until keys are created"
                    );
                }
            }
            Err(e) => tracing::warn!("cannot read the API keys (the last ones read stay in force): {e}"),
        }
    }
}
