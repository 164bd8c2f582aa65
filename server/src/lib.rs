//! The volcast REST service: forecasts of volatility and liquidity shortage from a trained
//! artifact, and the DeFi risk parameters derived from them (`SPEC.md`, "Risk parameters").
//!
//! The binary (`src/bin/server.rs`) parses [`Config`], starts logging and calls [`run`]; tests
//! drive [`app`] in-process or [`run`] on `127.0.0.1:0`.

pub mod config;
pub mod dto;
pub mod engine;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod queue;
pub mod risk;
pub mod routes;
pub mod state;
pub mod stress;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa_swagger_ui::SwaggerUi;

pub use config::Config;
use error::ApiError;
use extract::BodyLimit;
use metrics::Metrics;
use queue::{BatchQueue, QueueConfig};
use state::{AppState, Serving, Settings};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The artifact could not be loaded.
    #[error("could not load the model: {0}")]
    Model(#[from] volcast_training::artifact::ArtifactError),
    /// Socket or worker-thread failure.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The loading task died.
    #[error("model loading task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.settings().request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout { timeout: limit }.into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED {
        ApiError::MethodNotAllowed.into_response()
    } else {
        response
    }
}

/// The whole HTTP application: documented routes, Swagger UI at `/docs`, the spec at
/// `/openapi.json`, and the middleware stack (request ids, tracing, metrics, timeout, body limit).
pub fn app(state: AppState) -> Router {
    let (router, api) = openapi::api_router().split_for_parts();
    let settings = *state.settings();
    router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .fallback(not_found)
        .layer(middleware::from_fn(method_not_allowed))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(axum::extract::DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(Extension(BodyLimit(settings.max_body_bytes)))
        .layer(middleware::from_fn_with_state(
            Arc::clone(state.metrics()),
            metrics::track,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                // 5xx answers are logged by `ApiError` with their cause; a 503 while loading is no failure.
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// The queue settings of a config.
#[must_use]
pub fn queue_config(config: &Config) -> QueueConfig {
    QueueConfig {
        max_batch: usize::try_from(config.max_batch).unwrap_or(64),
        max_wait: config.max_wait(),
        capacity: usize::try_from(config.queue_capacity).unwrap_or(256),
        retry_after: std::time::Duration::from_secs(config.retry_after_s),
    }
}

/// Serves on `listener` until `shutdown` resolves, then finishes in-flight requests. The model
/// loads and warms up in the background; `/readyz` turns 200 when it is done.
///
/// # Errors
/// [`ServeError`] when the model cannot be loaded or the socket fails.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(Settings::from_config(&config), Arc::clone(&metrics));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app(state.clone())).with_graceful_shutdown(async move {
        tokio::select! {
            () = shutdown => tracing::info!("shutdown requested: finishing in-flight requests"),
            Ok(()) = stopped => {}
        }
    });
    let server = tokio::spawn(server.into_future());

    let queue_config = queue_config(&config);
    let path = config.artifact.clone();
    tracing::info!(artifact = %path.display(), "loading model");
    let loaded =
        tokio::task::spawn_blocking(move || model::load_and_warm(&path, queue_config.max_batch)).await;
    let (info, model) = match loaded {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            let _ = stop.send(());
            let _ = server.await;
            return Err(e.into());
        }
        Err(e) => {
            let _ = stop.send(());
            let _ = server.await;
            return Err(e.into());
        }
    };
    let (queue, _worker) = BatchQueue::start(Box::new(model), queue_config, metrics)?;
    tracing::info!(model = %info.metadata.id, hash = %info.hash, "model ready");
    if let Some(r) = &info.metadata.recalibration {
        tracing::info!(
            from = %r.from,
            until = %r.until,
            rolling_days = %r.rolling_days.map_or_else(|| "fixed".to_owned(), |d| d.to_string()),
            "output corrections measured on this window (refresh daily: calibrate --until)"
        );
    }
    state.set_serving(Serving {
        info: Arc::new(info),
        queue,
    });
    drop(state);
    server.await??;
    tracing::info!("server stopped");
    Ok(())
}
