//! The closed set of machine-readable error codes the service answers, and the body every error
//! answer carries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use volcast_core::candles::CandleProblem;

/// Every machine-readable error code the service answers: a closed set, stable across versions
/// (a new code is an API change). The README's table says when each is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON.
    MalformedJson,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 413: the body is larger than the limit.
    PayloadTooLarge,
    /// 400: the body could not be read.
    BodyUnreadable,
    /// 422: a required field is absent.
    MissingField,
    /// 422: a field has the wrong type or an impossible value.
    InvalidValue,
    /// 422: the body's shape is wrong (e.g. both `asset` and `items`).
    InvalidShape,
    /// 422: a candle value is not a finite number.
    NonFinite,
    /// 422: a candle price is not positive.
    NonPositivePrice,
    /// 422: a candle volume is negative.
    NegativeVolume,
    /// 422: a candle's high is below its low.
    HighBelowLow,
    /// 422: a candle's close is outside `[low, high]`.
    CloseOutsideRange,
    /// 422: a candle's `open_time` is not on a whole hour.
    NotOnTheHour,
    /// 422: candles are not in increasing time order.
    UnsortedTimestamps,
    /// 422: two candles have the same `open_time`.
    DuplicateTimestamp,
    /// 422: fewer candles than the model needs.
    TooFewCandles,
    /// 413: more candles than the limit.
    TooManyCandles,
    /// 422: too few returns in a trailing window the model needs.
    InsufficientHistory,
    /// 422: a horizon the model does not serve.
    UnknownHorizon,
    /// 422: a stress scenario the service does not know.
    UnknownScenario,
    /// 422: the inputs' magnitudes give non-finite forecasts or parameters.
    UnusableInput,
    /// 422: a quote volume implausibly far from the median of the candles used.
    ImplausibleVolume,
    /// 422: a stress request above the work budget.
    TooMuchWork,
    /// 422: an hour of the last day shows no trading (no price range or no quote volume).
    DegenerateMarket,
    /// 422: a setting outside its range.
    OutOfRange,
    /// 413: more assets in a batch than the limit.
    BatchTooLarge,
    /// 422: a batch with no item.
    EmptyBatch,
    /// 400: a query parameter is unknown or does not parse.
    InvalidQuery,
    /// 404: no such route.
    NotFound,
    /// 404: the store holds no candle of this asset.
    UnknownAsset,
    /// 405: the route does not take that method.
    MethodNotAllowed,
    /// 429: the inference queue is full; see Retry-After.
    QueueFull,
    /// 429: every stress simulation slot is taken; see Retry-After.
    StressBusy,
    /// 503: the request took longer than the timeout.
    Timeout,
    /// 503: no model is loaded yet.
    ModelNotReady,
    /// 503: the service holds as many connections as it allows; see Retry-After.
    TooManyConnections,
    /// 503: the asset's last stored candle is older than the service's maximum staleness.
    StaleMarketData,
    /// 503: the asset's stored candles cannot be forecast (too few hours, too many missing, a
    /// halted market): the store lacks what the request would need; the message says what.
    StoredDataUnusable,
    /// 503: the market-data store cannot be read (or there is none); details are in its log.
    StoreUnavailable,
    /// 401: no API key, or one that is unknown, wrong or revoked.
    Unauthorized,
    /// 403: the API key lacks the scope the route needs.
    Forbidden,
    /// 429: the API key is over its rate limit; see Retry-After.
    RateLimited,
    /// 404: no decision with this id.
    UnknownDecision,
    /// 503: the decision could not be logged, so it is not served; details are in the log.
    DecisionLogUnavailable,
    /// 503: a decision cannot be replayed (its artifact or inputs are gone).
    ReplayUnavailable,
    /// 503: the model could not be reloaded; the old one is still served.
    ReloadFailed,
    /// 503: no anomaly detector is loaded (see `--anomaly-detector`).
    DetectorUnavailable,
    /// 500: a failure of the service; details are in its log.
    Internal,
}

impl From<CandleProblem> for ErrorCode {
    fn from(p: CandleProblem) -> Self {
        match p {
            CandleProblem::NonFinite => Self::NonFinite,
            CandleProblem::NonPositive => Self::NonPositivePrice,
            CandleProblem::Negative => Self::NegativeVolume,
            CandleProblem::HighBelowLow => Self::HighBelowLow,
            CandleProblem::CloseOutsideRange => Self::CloseOutsideRange,
            CandleProblem::NotOnTheHour => Self::NotOnTheHour,
            CandleProblem::Unsorted => Self::UnsortedTimestamps,
            CandleProblem::Duplicate => Self::DuplicateTimestamp,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"error": "high_below_low", "message": "candles[17].high = 9 is below low", "field": "candles[17].high"}))]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub error: ErrorCode,
    /// Human-readable explanation; wording may change.
    pub message: String,
    /// The offending request field, as a JSON path, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
