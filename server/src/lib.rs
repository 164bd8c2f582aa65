//! The volcast REST service: forecasts of volatility and liquidity shortage from a trained
//! artifact, and the DeFi risk parameters derived from them (`SPEC.md`, "Risk parameters").
//!
//! The binary (`src/bin/server.rs`) parses [`Config`], starts logging and calls [`run`]; tests
//! drive [`app`] in-process or [`run`] on `127.0.0.1:0`. The forecasts come from
//! `volcast-model`, the risk parameters from `volcast_core::policy`; this crate is the HTTP side.
//!
//! # Layout
//! - [`config`]: the one clap struct of flags and `VOLCAST_*` variables, and the load and queue
//!   settings derived from it.
//! - [`state`]: what handlers share: settings, metrics, the model being served (hot-swappable).
//! - [`model_info`]: loading and warming an artifact, and what the service says about it.
//! - [`loading`]: an artifact loaded into the inference queue, its anomaly detector, and
//!   reloads (SIGHUP, the daily job).
//! - [`queue`]: the bounded batching queue in front of the model's forward passes.
//! - [`extract`]: our JSON extractor (errors in our format) and the body limit.
//! - [`inputs`]: request candles checked (SPEC's rules) and turned into model inputs.
//! - [`dto`]: request and response bodies with their OpenAPI schemas; [`dto::stress`] for the
//!   stress route.
//! - [`error`]: the typed API error, its HTTP status and its stable code.
//! - [`routes`]: one handler module per route family (forecasts, risk parameters, stress,
//!   assets from the store, meta).
//! - [`openapi`]: routes and the OpenAPI document registered together.
//! - [`serve`]: accepting connections within limits (header deadline, cap, drain deadline).
//! - market data: the store (`volcast-store`) opened at start from `--database-url`, read by
//!   [`routes::assets`].
//! - [`metrics`]: Prometheus metrics (`/metrics`).
//! - [`ledger`]: the forecast ledger: what would be served at each daily origin, scored as the
//!   outcomes arrive, and the figures of `GET /v1/model/validation`.
//! - [`gate`]: the champion/challenger gate: on the ledger alone, the model's policy or HAR's.
//! - [`daily`]: the daily job inside the service: the recalibration at 00:00 UTC (the offline
//!   `calibrate --until` code), the ledger, the gate, in that order.
//! - [`follower`]: the live market-data follower: Binance's hourly klines into the store
//!   (backfill, backoff, resumes after a restart), beside the request path.
//! - [`replay`]: the daily operation over history from candle files (the `replay` binary of
//!   `training/replay`).
//! - `bin/`: `server`, `keys` (API keys), `verify` (checks a decision log) and `openapi` (writes
//!   or checks `openapi.yaml`).

pub mod anomaly;
pub mod audit;
pub mod auth;
pub mod config;
pub mod daily;
pub mod dto;
pub mod error;
pub mod extract;
pub mod follower;
pub mod gate;
pub mod inputs;
pub mod ledger;
pub mod loading;
pub mod metrics;
pub mod model_info;
pub mod openapi;
pub mod queue;
pub mod replay;
pub mod routes;
pub mod serve;
pub mod state;
pub mod unread_query;

use std::future::Future;
use std::path::Path;
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

pub use config::{Config, LoadOptions, load_options, queue_config};
use error::ApiError;
use extract::BodyLimit;
#[cfg(unix)]
use loading::reload_on_hangup;
pub use loading::{LoadError, install_detector, load, reload};
use metrics::Metrics;
use state::{AppState, Settings};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The artifact could not be loaded and served ([`LoadError`]'s own messages).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Socket or worker-thread failure.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A default risk setting of the config is outside its range.
    #[error("invalid configuration: {0}")]
    Config(#[from] volcast_core::policy::SettingsError),
    /// The serving task died (a loading task's death is [`LoadError::Join`]).
    #[error("model loading task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The follower's settings are wrong.
    #[error("market-data follower: {0}")]
    Follow(#[from] follower::FollowError),
    /// The decision log's signing key could not be read or made.
    #[error("{0}")]
    SigningKey(#[from] audit::KeyError),
    /// A non-loopback address without API keys and without `--insecure-no-auth`.
    #[error(
        "refusing to listen on {0} without API keys: create one with `keys create`, listen on \
         loopback, or pass --insecure-no-auth"
    )]
    NoAuth(std::net::SocketAddr),
    /// The market-data store could not be opened or migrated.
    #[error("market-data store {}", source.said_of(url))]
    Store {
        /// The store's URL, without its password.
        url: String,
        /// What failed.
        source: volcast_store::StoreError,
    },
    /// The anomaly detector could not be loaded.
    #[error("anomaly detector: {0}")]
    Anomaly(String),
    /// A limit of the config under which the model can answer nothing.
    #[error("invalid configuration: {0}")]
    Limits(String),
}

/// How often the market-data age gauges are refreshed.
const MARKET_DATA_WATCH: std::time::Duration = std::time::Duration::from_secs(30);
/// The longest a read of the stored assets' last candles may take before it is given up.
const MARKET_DATA_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub use volcast_store::redact_url;

/// Opens the market-data store named by the config (creating and migrating it as needed).
///
/// # Errors
/// [`ServeError::Store`].
pub async fn open_store(config: &Config) -> Result<volcast_store::Store, ServeError> {
    let url = redact_url(&config.database_url);
    let store = volcast_store::Store::open(&config.database_url)
        .await
        .map_err(|source| ServeError::Store {
            url: url.clone(),
            source,
        })?;
    tracing::info!(store = %url, backend = ?store.backend(), "market-data store open");
    Ok(store)
}

/// `fut`, given up after `limit`: its value, or its error or that no answer came within `limit`,
/// as text. For the store reads that are safe to give up (a read left hanging on a connection
/// whose peer is gone would otherwise never return).
pub(crate) async fn within<T, E: std::fmt::Display>(
    limit: std::time::Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// Keeps `volcast_market_data_age_seconds` current for every stored asset (the follower's gauges
/// are set at each scrape), reading the store's last candles every `period`. Each read is given
/// up after 5 s, and the gauges are set from the last times read
/// whether or not the read succeeded: while the store cannot be read they keep rising, so a
/// staleness alert fires instead of the last reading freezing (until stop 55 a failed read left
/// them as they were, and a read left hanging stopped them for good).
pub async fn watch_market_data(state: AppState, period: std::time::Duration) {
    use volcast_store::CandleStore as _;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_known = std::collections::BTreeMap::new();
    loop {
        tick.tick().await;
        let Ok(store) = state.store() else { continue };
        match within(MARKET_DATA_READ_TIMEOUT, store.last_open_times()).await {
            Ok(times) => last_known.extend(times),
            Err(e) => tracing::warn!("cannot read the market data's last candles: {e}"),
        }
        let now = state.now_ms();
        for (asset, last) in &last_known {
            state
                .metrics()
                .set_market_data_age(asset, routes::assets::age_ms(*last, now));
        }
    }
}

/// The request timeout, which never cancels a request once its decisions are in the log's
/// writer: the writer commits them whatever becomes of the request, so the request waits for its
/// verdict however long that takes (the answer if they were committed, 503
/// `decision_log_unavailable` if not). A record always names an answer that was served, except
/// to a client that hung up, or one whose connection a shutdown dropped at its deadline while
/// the writer still waited on the store. (A cap on that wait, 30 s until stop 53, let a store blocked on a
/// lock commit records of answers the requests had given up on.)
async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.settings().request_timeout;
    let (handed_over, run) = audit::log::watch_hand_over(next.run(req));
    let mut run = std::pin::pin!(run);
    match tokio::time::timeout(limit, &mut run).await {
        Ok(response) => response,
        Err(_) if handed_over.get() => run.await,
        Err(_) => ApiError::Timeout { timeout: limit }.into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed(req: Request, next: Next) -> Response {
    // HEAD on a GET route that logs its answer would log an answer never sent (axum answers
    // HEAD with the GET handler and drops the body).
    if req.method() == axum::http::Method::HEAD
        && req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .is_some_and(|p| LOGGED_GETS.contains(&p.as_str()))
    {
        let mut refused = ApiError::MethodNotAllowed.into_response();
        refused.headers_mut().insert(
            axum::http::header::ALLOW,
            axum::http::HeaderValue::from_static("GET"),
        );
        return refused;
    }
    let response = next.run(req).await;
    if response.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED {
        // Our error body; axum's method router adds `Allow` to it (this layer runs inside it).
        ApiError::MethodNotAllowed.into_response()
    } else {
        response
    }
}

/// The GET routes whose answers are logged decisions.
const LOGGED_GETS: [&str; 2] = ["/v1/assets/{asset}/risk", "/v1/assets/{asset}/risk/updates"];

/// The whole HTTP application: documented routes, Swagger UI at `/docs`, the spec at
/// `/openapi.json`, and the middleware stack (request ids, tracing, metrics, timeout, body limit).
pub fn app(state: AppState) -> Router {
    let (router, api) = openapi::parts();
    let settings = *state.settings();
    let query_routes = Arc::new(unread_query::QueryRoutes::of(&api));
    router
        // No outside validator: browsers reading the docs call nothing but this service.
        .merge(
            SwaggerUi::new("/docs")
                .url("/openapi.json", api)
                .config(utoipa_swagger_ui::Config::default().validator_url("none")),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(query_routes, unread_query::refuse))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::guard::authorize,
        ))
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
        .layer(middleware::from_fn(sanitize_request_id))
        .with_state(state)
}

/// Longest `x-request-id` a caller may set; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Whether a caller's request id is kept: 1 to [`MAX_REQUEST_ID_LEN`] characters of
/// `A-Z a-z 0-9 . _ : -` (nothing that could forge fields in a text log).
#[must_use]
pub fn acceptable_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Drops a caller's `x-request-id` that is too long or holds other characters, so a fresh one
/// is made (and echoed) instead.
async fn sanitize_request_id(mut req: Request, next: Next) -> Response {
    let ids = req.headers().get_all(&REQUEST_ID);
    if ids.iter().count() > 1 || ids.iter().any(|v| !acceptable_request_id(v.as_bytes())) {
        req.headers_mut().remove(&REQUEST_ID);
    }
    next.run(req).await
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
    // First: a SIGHUP while the store opens and the model loads is a reload afterwards, never
    // the end of the process.
    #[cfg(unix)]
    let hangups = loading::listen_for_hangups();
    #[cfg(not(unix))]
    let hangups = None;
    run_listening(config, listener, shutdown, hangups, |_| {}).await
}

/// [`run`] with the SIGHUP stream a caller opened before it started
/// ([`loading::listen_for_hangups`]): a SIGHUP between the announcement and the start of
/// `run` is a reload then, not lost (a stream sees only the signals after it was opened).
/// `announce` is called once the start is allowed (the store open, its keys checked against the
/// address, the follower's settings checked and its tasks started, before the model loads): a start refused for listening beyond loopback without keys
/// announced its address first (until stop 60), which a supervisor read as a start.
///
/// # Errors
/// As [`run`].
pub async fn run_listening(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    #[cfg(unix)] hangups: Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))] hangups: Option<()>,
    announce: impl FnOnce(&TcpListener),
) -> Result<(), ServeError> {
    #[cfg(not(unix))]
    let _ = hangups;
    config.check_limits().map_err(ServeError::Limits)?;
    let unread = config::unread_env_names(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()));
    if !unread.is_empty() {
        tracing::warn!(
            variables = unread.join(", "),
            "set but read by no option (a typo leaves its option at the default; `server --help` \
             names each option's variable)"
        );
    }
    let metrics = Arc::new(Metrics::new());
    let settings = Settings::from_config(&config)?;
    let store = open_store(&config).await?;
    let state = AppState::with_store(settings, Arc::clone(&metrics), Some(store.clone()));
    secure(&config, &listener, &state, &store).await?;
    // The follower's settings are checked as it starts: a bad symbol or poll refuses the start
    // before the address is announced (it was refused after, which read as a start).
    let follower = match config.follow_config() {
        Some(follow) => {
            let f = follower::Follower::spawn(store.clone(), follow, follower::Clock::system())?;
            state.set_follow_status(f.status());
            Some(f)
        }
        None => None,
    };
    announce(&listener);
    let watcher = tokio::spawn(watch_market_data(state.clone(), MARKET_DATA_WATCH));
    let key_watcher = tokio::spawn(auth::guard::watch_keys(state.clone()));
    let ledger = tokio::spawn(daily::job(
        state.clone(),
        daily::DailyOptions {
            recalibrate: config.daily_recalibration,
            artifacts_dir: config.recalibrated_dir.clone(),
            load: load_options(&config),
            store_deadline: daily::STORE_DEADLINE,
        },
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = serve::serve(
        listener,
        app(state.clone()),
        config.connection_limits(),
        Arc::clone(&metrics),
        async move {
            tokio::select! {
                () = shutdown => tracing::info!("shutdown requested"),
                Ok(()) = stopped => {}
            }
        },
    );
    let mut server = tokio::spawn(server);
    let background = Background {
        watcher,
        key_watcher,
        ledger,
        follower,
    };

    let options = load_options(&config);
    if let Some(p) = &config.anomaly_detector {
        state.set_anomaly_path(p.clone());
    }
    // A shutdown while the model loads ends the process then, not once the load is done (a
    // slow disk or a large warm-up outlasted a supervisor's grace period and ended in SIGKILL):
    // the load, on a blocking thread, is left to the runtime's shutdown deadline.
    let loaded = tokio::select! {
        loaded = load(&config.artifact, options, &metrics) => loaded,
        served = &mut server => {
            tracing::info!("shutdown before the model was ready: not waiting for its load");
            background.stop(&store, &config).await;
            served??;
            return Ok(());
        }
    };
    let loaded = loaded
        .map_err(|e| match e {
            LoadError::Limits(m) => ServeError::Limits(m),
            e => ServeError::from(e),
        })
        .and_then(|serving| {
            install_detector(&state, &serving.info.dir).map_err(ServeError::Anomaly)?;
            Ok(serving)
        });
    match loaded {
        Ok(serving) => state.set_serving(serving),
        Err(e) => {
            let _ = stop.send(());
            let _ = server.await;
            background.stop(&store, &config).await;
            return Err(e);
        }
    }
    state.set_reload_target(config.artifact.clone(), options);
    #[cfg(unix)]
    let reloader = tokio::spawn(reload_on_hangup(
        state.clone(),
        config.artifact.clone(),
        options,
        Arc::clone(&metrics),
        hangups,
    ));
    drop(state);
    let served = server.await;
    #[cfg(unix)]
    reloader.abort();
    background.stop(&store, &config).await;
    served??;
    tracing::info!("server stopped");
    Ok(())
}

/// The tasks beside the request path, stopped when the server stops.
struct Background {
    watcher: tokio::task::JoinHandle<()>,
    key_watcher: tokio::task::JoinHandle<()>,
    ledger: tokio::task::JoinHandle<()>,
    follower: Option<follower::Follower>,
}

impl Background {
    /// Stops them, then closes the store.
    async fn stop(self, store: &volcast_store::Store, config: &Config) {
        self.watcher.abort();
        self.key_watcher.abort();
        self.ledger.abort();
        if let Some(f) = self.follower {
            f.shutdown().await;
        }
        close_store(store, config).await;
    }
}

/// Closes the store, waiting for the connections in use at most the shutdown deadline: one left
/// hanging (a PostgreSQL peer gone without a reset) would otherwise hold the exit for good.
async fn close_store(store: &volcast_store::Store, config: &Config) {
    let deadline = std::time::Duration::from_millis(config.shutdown_deadline_ms);
    if tokio::time::timeout(deadline, store.close()).await.is_err() {
        tracing::warn!("the store's connections did not close within {deadline:?}; exiting without them");
    }
}

/// Access control and the decision log: the keys in force (refusing a non-loopback address
/// without any unless `--insecure-no-auth`), the signing key, and the log's writer.
async fn secure(
    config: &Config,
    listener: &TcpListener,
    state: &AppState,
    store: &volcast_store::Store,
) -> Result<(), ServeError> {
    use volcast_store::KeyStore as _;
    let store_error = |source| ServeError::Store {
        url: redact_url(&config.database_url),
        source,
    };
    let keys = store.keys().await.map_err(store_error)?;
    state.access().set_keys(&keys);
    let addr = listener.local_addr()?;
    if keys.is_empty() {
        if !addr.ip().is_loopback() && !config.insecure_no_auth {
            return Err(ServeError::NoAuth(addr));
        }
        tracing::warn!(
            listen = %addr,
            "no API key configured: every route is open{} (create a key with `keys create`)",
            if addr.ip().is_loopback() { ", on loopback only" } else { " (--insecure-no-auth)" }
        );
    } else {
        let active = keys.iter().filter(|k| k.revoked.is_none()).count();
        tracing::info!(keys = keys.len(), active, "API keys in force");
    }
    if !config.decision_log {
        tracing::warn!("--decision-log false: risk answers are served without a record or a decision id");
        return Ok(());
    }
    let key_file = config.signing_key.clone().unwrap_or_else(|| {
        store
            .file()
            .and_then(Path::parent)
            .unwrap_or_else(|| Path::new("data"))
            .join("signing-key.pk8")
    });
    let (signer, created) = audit::Signer::load_or_create(&key_file)?;
    tracing::info!(
        key_id = %signer.key_id,
        public_key = %signer.public_hex,
        file = %key_file.display(),
        created,
        "decision log signing key"
    );
    let log = audit::log::DecisionLog::start(store.clone(), signer, Arc::clone(state.metrics()))
        .await
        .map_err(store_error)?;
    state.set_decisions(log);
    Ok(())
}
