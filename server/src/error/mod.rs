//! Every way a request can fail, and the one exhaustive mapping from those failures to HTTP
//! statuses and stable error codes. 5xx bodies stay generic; their details go to the log.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use volcast_core::candles::CandleProblem;

mod code;

pub use code::{ErrorBody, ErrorCode};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON (syntax error or truncated).
    #[error("malformed JSON: {message}")]
    MalformedJson {
        /// Parser message.
        message: String,
    },
    /// The body is not `application/json`.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body is encoded (`Content-Encoding: gzip`, ...): the service reads plain JSON only. A
    /// gzip body was read as text and refused as malformed JSON, and a plain one sent under the
    /// header was read as if the header were not there.
    #[error("Content-Encoding {0:?} is not supported: send the JSON body unencoded")]
    UnsupportedEncoding(String),
    /// The body is larger than the configured limit.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read.
    #[error("could not read the request body: {0}")]
    BodyUnreadable(String),
    /// A required field is absent.
    #[error("{field} is required")]
    MissingField {
        /// JSON path of the field.
        field: String,
    },
    /// A field has the wrong type or an impossible value for its type.
    #[error("{field}: {message}")]
    InvalidValue {
        /// JSON path of the field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Both the single shape and the batch shape, or neither.
    #[error("{0}")]
    InvalidShape(String),
    /// A candle breaks one of SPEC's bad-input rules.
    #[error("{field} = {value} {}", problem.describe())]
    BadCandle {
        /// JSON path, e.g. `candles[17].high`.
        field: String,
        /// The offending value.
        value: f64,
        /// The rule broken.
        problem: CandleProblem,
    },
    /// Less history than the model needs: the candles span fewer hours.
    #[error("{field} spans {got} hours; the candles must span at least {need} hours (the origin and {before} hours before it; hours missing within them are judged by SPEC's 90% rule)", before = .need - 1)]
    TooFewCandles {
        /// JSON path of the candle array.
        field: String,
        /// Hours from the first candle's open to the last candle's close.
        got: usize,
        /// Hours needed.
        need: usize,
    },
    /// More candles than the configured limit.
    #[error("{field} holds {got} candles; at most {max} are accepted")]
    TooManyCandles {
        /// JSON path of the candle array.
        field: String,
        /// Candles given.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// Enough candles, but too many missing hours for the features.
    #[error("{field}: {message}")]
    InsufficientHistory {
        /// JSON path of the candle array.
        field: String,
        /// Which window lacks data.
        message: String,
    },
    /// A horizon the model does not forecast.
    #[error("{field} = {horizon}: the model forecasts horizons {served:?} only")]
    UnknownHorizon {
        /// JSON path of the horizon.
        field: String,
        /// The horizon asked for.
        horizon: u64,
        /// The horizons served.
        served: Vec<usize>,
    },
    /// A stress scenario the artifact does not carry.
    #[error("{field} = `{name}`: the artifact's historical scenarios are {known:?}")]
    UnknownScenario {
        /// JSON path of the scenario name.
        field: String,
        /// The name asked for.
        name: String,
        /// The names available.
        known: Vec<String>,
    },
    /// Input that passes every candle rule, but whose magnitudes (prices or volumes near the
    /// limits of floating point) make the model or the risk engine produce a non-finite number;
    /// the request fails rather than serve a number built on it.
    #[error("{field}: {message}")]
    UnusableInput {
        /// JSON path of the asset's candle array.
        field: String,
        /// What was non-finite, and for which asset.
        message: String,
    },
    /// A candle's quote volume is implausibly far from the median of the candles used: a unit or
    /// data error that would otherwise move the forecasts (and loosen the parameters) at will.
    #[error(
        "{field}: the quote volume is {ratio:.3e} times the median of the candles used; outside \
         [{min:e}, {max:e}] it is taken for a unit or data error (real markets stay within about 6e-6 .. 6e3)"
    )]
    ImplausibleVolume {
        /// JSON path of the candle's `quote_volume`.
        field: String,
        /// Its ratio to the median quote volume.
        ratio: f64,
        /// Smallest ratio accepted.
        min: f64,
        /// Largest ratio accepted.
        max: f64,
    },
    /// A stress request whose simulation work (paths x scenarios x (horizon + positions / 16))
    /// is over the per-request budget.
    #[error(
        "the simulation needs {work} path-steps (paths x scenarios x (horizon_hours + positions / 16)); at most {max} are accepted per request: ask for fewer paths, scenarios or positions"
    )]
    TooMuchWork {
        /// Work asked for.
        work: u64,
        /// The budget.
        max: u64,
    },
    /// A parameter outside its range.
    #[error("{field} = {} is outside {range}", volcast_core::policy::said(*value))]
    OutOfRange {
        /// JSON path of the parameter.
        field: String,
        /// The value given.
        value: f64,
        /// The allowed range, in words.
        range: &'static str,
    },
    /// More assets in one request than allowed.
    #[error("items holds {got} assets; at most {max} are accepted per request")]
    BatchTooLarge {
        /// Items given.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// An empty batch.
    #[error("items is empty")]
    EmptyBatch,
    /// No such route.
    #[error("no such route")]
    NotFound,
    /// The route exists with another method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The inference queue is full.
    #[error("the inference queue is full; retry after {} s", retry_after.as_secs())]
    QueueFull {
        /// How long the client should wait.
        retry_after: Duration,
    },
    /// Every stress-simulation slot is taken (`MAX_STRESS_JOBS` simulations are running).
    #[error("{max} stress simulations are already running; retry after {} s", retry_after.as_secs())]
    StressBusy {
        /// Simulations allowed at once.
        max: usize,
        /// How long the client should wait (a running simulation ends by then).
        retry_after: Duration,
    },
    /// The request took longer than the configured timeout.
    #[error("the request took longer than {} ms", timeout.as_millis())]
    Timeout {
        /// The timeout.
        timeout: Duration,
    },
    /// An hour among the last day's shows no trading: the window cannot support a forecast.
    #[error(
        "{field}: {count} of the last {window} hours show no trading (no price range, or no quote \
         volume), the latest this one; a stalled feed, a halted market or a pinned thin market \
         cannot support a forecast, so no parameters are served on it"
    )]
    DegenerateMarket {
        /// JSON path of the latest such candle.
        field: String,
        /// How many such hours.
        count: usize,
        /// The hours checked.
        window: usize,
    },
    /// The model is still loading (or failed to load).
    #[error("the model is not ready yet")]
    NotReady,
    /// A query parameter is unknown or does not parse.
    #[error("{field}: {message}")]
    InvalidQuery {
        /// The parameter (or `query` when the parser names none).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The store holds no candle of the asset.
    #[error("no stored candles for asset {asset:?} (GET /v1/assets lists the assets served)")]
    UnknownAsset {
        /// The asset asked for.
        asset: String,
    },
    /// The asset's last stored candle closed longer ago than the maximum staleness.
    #[error(
        "market data for {asset} is stale: its last stored candle opened at {last_open_time} and \
         closed {age_s} s ago, over the maximum of {max_s} s; no answer is served on old data"
    )]
    StaleMarketData {
        /// The asset.
        asset: String,
        /// Open time of its last stored candle, RFC 3339.
        last_open_time: String,
        /// Seconds since that candle closed.
        age_s: i64,
        /// The maximum staleness, seconds.
        max_s: u64,
    },
    /// The asset's stored candles cannot be forecast (too few hours, too many missing, a halted
    /// market): what the POST routes answer 422 for a window a caller sent, said of the store's.
    #[error("the stored candles of {asset} cannot be served: {message}")]
    StoredDataUnusable {
        /// The asset.
        asset: String,
        /// Why, as the POST routes say it of the same window.
        message: String,
    },
    /// The market-data store failed (or the service has none); the cause is logged.
    #[error("market-data store unavailable: {0}")]
    StoreUnavailable(String),
    /// The service holds as many connections as it allows (answered before any request is read).
    #[error("the service holds its maximum of {max} connections; retry shortly")]
    TooManyConnections {
        /// The cap.
        max: usize,
    },
    /// No valid API key.
    #[error("{0}")]
    Unauthorized(String),
    /// The key lacks the route's scope.
    #[error("API key {key_id} lacks the `{scope}` scope this route needs")]
    Forbidden {
        /// The scope needed.
        scope: &'static str,
        /// The key's id.
        key_id: String,
    },
    /// The key is over its rate limit.
    #[error("API key {key_id} is over its rate limit; retry after {} s", retry_after.as_secs())]
    RateLimited {
        /// The key's id.
        key_id: String,
        /// How long the client should wait.
        retry_after: Duration,
    },
    /// No decision with this id.
    #[error("no decision with id {id:?}")]
    UnknownDecision {
        /// The id asked for.
        id: String,
    },
    /// The decision log could not append the record; the answer is withheld.
    #[error("decision log: {0}")]
    DecisionLog(String),
    /// The decision cannot be replayed.
    #[error("cannot replay the decision: {0}")]
    ReplayUnavailable(String),
    /// The reload failed (or cannot be done); the old model is still served.
    #[error("reload failed, the old model is still served: {0}")]
    ReloadFailed(String),
    /// No anomaly detector is loaded.
    #[error(
        "no anomaly detector is loaded: train one with `anomaly train` and start the service with \
         --anomaly-detector, or put anomaly.json in the artifact's directory"
    )]
    DetectorUnavailable,
    /// Anything else: a bug or a dead worker. Details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<volcast_store::StoreError> for ApiError {
    fn from(e: volcast_store::StoreError) -> Self {
        Self::StoreUnavailable(e.to_string())
    }
}

impl From<volcast_core::policy::SettingsError> for ApiError {
    fn from(e: volcast_core::policy::SettingsError) -> Self {
        Self::OutOfRange {
            field: e.field,
            value: e.value,
            range: e.range,
        }
    }
}

impl ApiError {
    /// HTTP status and stable error code.
    #[must_use]
    pub fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        use ErrorCode as C;
        use StatusCode as S;
        match self {
            Self::MalformedJson { .. } => (S::BAD_REQUEST, C::MalformedJson),
            Self::UnsupportedMediaType | Self::UnsupportedEncoding(_) => {
                (S::UNSUPPORTED_MEDIA_TYPE, C::UnsupportedMediaType)
            }
            Self::PayloadTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, C::PayloadTooLarge),
            Self::BodyUnreadable(_) => (S::BAD_REQUEST, C::BodyUnreadable),
            Self::MissingField { .. } => (S::UNPROCESSABLE_ENTITY, C::MissingField),
            Self::InvalidValue { .. } => (S::UNPROCESSABLE_ENTITY, C::InvalidValue),
            Self::InvalidShape(_) => (S::UNPROCESSABLE_ENTITY, C::InvalidShape),
            Self::BadCandle { problem, .. } => (S::UNPROCESSABLE_ENTITY, (*problem).into()),
            Self::TooFewCandles { .. } => (S::UNPROCESSABLE_ENTITY, C::TooFewCandles),
            Self::TooManyCandles { .. } => (S::PAYLOAD_TOO_LARGE, C::TooManyCandles),
            Self::InsufficientHistory { .. } => (S::UNPROCESSABLE_ENTITY, C::InsufficientHistory),
            Self::UnknownHorizon { .. } => (S::UNPROCESSABLE_ENTITY, C::UnknownHorizon),
            Self::UnknownScenario { .. } => (S::UNPROCESSABLE_ENTITY, C::UnknownScenario),
            Self::UnusableInput { .. } => (S::UNPROCESSABLE_ENTITY, C::UnusableInput),
            Self::ImplausibleVolume { .. } => (S::UNPROCESSABLE_ENTITY, C::ImplausibleVolume),
            Self::TooMuchWork { .. } => (S::UNPROCESSABLE_ENTITY, C::TooMuchWork),
            Self::DegenerateMarket { .. } => (S::UNPROCESSABLE_ENTITY, C::DegenerateMarket),
            Self::OutOfRange { .. } => (S::UNPROCESSABLE_ENTITY, C::OutOfRange),
            Self::BatchTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, C::BatchTooLarge),
            Self::EmptyBatch => (S::UNPROCESSABLE_ENTITY, C::EmptyBatch),
            Self::NotFound => (S::NOT_FOUND, C::NotFound),
            Self::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, C::MethodNotAllowed),
            Self::QueueFull { .. } => (S::TOO_MANY_REQUESTS, C::QueueFull),
            Self::StressBusy { .. } => (S::TOO_MANY_REQUESTS, C::StressBusy),
            Self::Timeout { .. } => (S::SERVICE_UNAVAILABLE, C::Timeout),
            Self::NotReady => (S::SERVICE_UNAVAILABLE, C::ModelNotReady),
            Self::TooManyConnections { .. } => (S::SERVICE_UNAVAILABLE, C::TooManyConnections),
            Self::InvalidQuery { .. } => (S::BAD_REQUEST, C::InvalidQuery),
            Self::UnknownAsset { .. } => (S::NOT_FOUND, C::UnknownAsset),
            Self::StaleMarketData { .. } => (S::SERVICE_UNAVAILABLE, C::StaleMarketData),
            Self::StoredDataUnusable { .. } => (S::SERVICE_UNAVAILABLE, C::StoredDataUnusable),
            Self::StoreUnavailable(_) => (S::SERVICE_UNAVAILABLE, C::StoreUnavailable),
            Self::Unauthorized(_) => (S::UNAUTHORIZED, C::Unauthorized),
            Self::Forbidden { .. } => (S::FORBIDDEN, C::Forbidden),
            Self::RateLimited { .. } => (S::TOO_MANY_REQUESTS, C::RateLimited),
            Self::UnknownDecision { .. } => (S::NOT_FOUND, C::UnknownDecision),
            Self::DecisionLog(_) => (S::SERVICE_UNAVAILABLE, C::DecisionLogUnavailable),
            Self::ReplayUnavailable(_) => (S::SERVICE_UNAVAILABLE, C::ReplayUnavailable),
            Self::ReloadFailed(_) => (S::SERVICE_UNAVAILABLE, C::ReloadFailed),
            Self::DetectorUnavailable => (S::SERVICE_UNAVAILABLE, C::DetectorUnavailable),
            Self::Internal(_) => (S::INTERNAL_SERVER_ERROR, C::Internal),
        }
    }

    /// The offending field, where there is one.
    #[must_use]
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::MissingField { field }
            | Self::InvalidValue { field, .. }
            | Self::BadCandle { field, .. }
            | Self::TooFewCandles { field, .. }
            | Self::TooManyCandles { field, .. }
            | Self::InsufficientHistory { field, .. }
            | Self::UnknownHorizon { field, .. }
            | Self::UnknownScenario { field, .. }
            | Self::UnusableInput { field, .. }
            | Self::ImplausibleVolume { field, .. }
            | Self::DegenerateMarket { field, .. }
            | Self::OutOfRange { field, .. }
            | Self::InvalidQuery { field, .. } => Some(field),
            Self::TooMuchWork { .. } => Some("paths"),
            Self::BatchTooLarge { .. } | Self::EmptyBatch => Some("items"),
            _ => None,
        }
    }

    /// The error body.
    #[must_use]
    pub fn body(&self) -> ErrorBody {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error()
            && !matches!(
                self,
                Self::Timeout { .. }
                    | Self::NotReady
                    | Self::TooManyConnections { .. }
                    | Self::StaleMarketData { .. }
                    | Self::StoredDataUnusable { .. }
                    | Self::ReplayUnavailable(_)
                    | Self::ReloadFailed(_)
                    | Self::DetectorUnavailable
            ) {
            "internal error; see the server log".to_owned()
        } else {
            self.to_string()
        };
        ErrorBody {
            error: code,
            message,
            field: self.field().map(str::to_owned),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request rejected");
        }
        let mut response = (status, Json(self.body())).into_response();
        if let Self::QueueFull { retry_after }
        | Self::StressBusy { retry_after, .. }
        | Self::RateLimited { retry_after, .. } = &self
        {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        if let Self::Unauthorized(_) = &self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candle_codes_match_the_core_names() {
        for p in [
            CandleProblem::NonFinite,
            CandleProblem::NonPositive,
            CandleProblem::Negative,
            CandleProblem::HighBelowLow,
            CandleProblem::CloseOutsideRange,
            CandleProblem::NotOnTheHour,
            CandleProblem::Unsorted,
            CandleProblem::Duplicate,
        ] {
            let json = serde_json::to_value(ErrorCode::from(p)).unwrap();
            assert_eq!(json, p.code(), "{p:?}");
        }
    }

    #[test]
    fn server_errors_hide_details() {
        let b = ApiError::Internal("worker panicked at model.rs:12".into()).body();
        assert_eq!(b.error, ErrorCode::Internal);
        assert!(!b.message.contains("model.rs"));
        let b = ApiError::BadCandle {
            field: "candles[3].high".into(),
            value: 1.0,
            problem: CandleProblem::HighBelowLow,
        }
        .body();
        assert_eq!(
            (b.error, b.field.as_deref()),
            (ErrorCode::HighBelowLow, Some("candles[3].high"))
        );
    }

    #[test]
    fn queue_full_says_when_to_retry() {
        let r = ApiError::QueueFull {
            retry_after: Duration::from_secs(2),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let e = ApiError::StressBusy {
            max: 2,
            retry_after: Duration::from_secs(10),
        };
        assert_eq!(e.body().error, ErrorCode::StressBusy);
        assert!(!e.body().message.contains("inference queue"));
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "10");
    }
}
