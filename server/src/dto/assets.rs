//! Bodies and query parameters of the asset routes, which answer from the service's own market
//! data (`GET /v1/assets...`).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::dto::CandleDto;

/// `GET /v1/assets`: every stored asset and whether it can be served now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "now": "2026-12-02T14:05:00Z", "max_staleness_seconds": 7200, "history_hours": 889,
    "assets": [{"asset": "BTCUSDT", "first_open_time": "2017-08-17T04:00:00Z",
                "last_open_time": "2026-12-02T13:00:00Z", "candles": 81234,
                "missing_hours_30d": 0, "age_seconds": 300, "stale": false,
                "servable": true, "reason": null}],
    "following": [{"symbol": "BTCUSDT", "state": "caught_up", "last_open_time": "2026-12-02T13:00:00Z",
                   "last_success": "2026-12-02T14:00:05Z", "last_error": null, "consecutive_failures": 0,
                   "stored": 1000, "requests": 3, "rate_limited": 0}]
}))]
pub struct AssetsResponse {
    /// The service's time when it answered, RFC 3339.
    pub now: String,
    /// The service's `--max-staleness`, seconds.
    pub max_staleness_seconds: u64,
    /// Candles the model needs per asset (absent while the model loads).
    pub history_hours: Option<usize>,
    /// The assets, by id.
    pub assets: Vec<AssetStatus>,
    /// The live follower's symbols (`--follow`, `--follow-all`), by name; empty when it follows
    /// nothing.
    pub following: Vec<FollowDto>,
}

/// One symbol the live follower keeps up to date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FollowDto {
    /// The Binance symbol, also the asset id.
    pub symbol: String,
    /// `starting`, `backfilling`, `caught_up`, `retrying` (after a rate limit, server or network
    /// error, or refused data) or `refused` (the exchange refuses the symbol).
    pub state: String,
    /// Open time of the newest stored candle, RFC 3339.
    pub last_open_time: Option<String>,
    /// When the last successful request finished, RFC 3339.
    pub last_success: Option<String>,
    /// The most recent failure (kept after recovery; `consecutive_failures` says if current).
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Candles stored since the start.
    pub stored: u64,
    /// Requests sent since the start.
    pub requests: u64,
    /// Rate-limited answers (429, 418) since the start.
    pub rate_limited: u64,
}

/// One stored asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetStatus {
    /// Asset id, e.g. `BTCUSDT`.
    pub asset: String,
    /// Open time of its first stored candle, RFC 3339.
    pub first_open_time: String,
    /// Open time of its last stored candle, RFC 3339.
    pub last_open_time: String,
    /// Candles stored.
    pub candles: i64,
    /// Closed hours of the 30 days before `now` (720) with no stored candle.
    pub missing_hours_30d: i64,
    /// Seconds since the last stored candle closed.
    pub age_seconds: i64,
    /// Whether `age_seconds` is over the maximum staleness (the asset routes then answer 503
    /// `stale_market_data`).
    pub stale: bool,
    /// Whether the asset routes can forecast it now: the model is ready, the data is fresh, at
    /// least `history_hours` candles are stored, and the latest window passes SPEC's rules (the
    /// forecast is made, and kept for the asset routes).
    pub servable: bool,
    /// Why it cannot be served, when it cannot: the asset routes' error message.
    pub reason: Option<String>,
}

/// `GET /v1/assets/{asset}/candles`: a page of stored candles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CandlesQuery {
    /// First open time wanted: RFC 3339, a date (`2021-01-01`) or Unix ms. Without it, the page
    /// is the latest `limit` candles up to `to`.
    pub from: Option<String>,
    /// Last open time wanted (inclusive): RFC 3339, a date (its whole day) or Unix ms; default
    /// the latest stored.
    pub to: Option<String>,
    /// Candles per page, 1 to 5000 (default 1000).
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<u32>,
}

/// A page of an asset's stored candles, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"asset": "BTCUSDT", "candles": [{"open_time": 1_704_063_600_000_i64, "open": 42000.0, "high": 42150.5, "low": 41890.0, "close": 42100.0, "volume": 812.4, "quote_volume": 34_170_000.0}], "next_from": "2024-01-01T00:00:00Z"}))]
pub struct CandlesPage {
    /// Asset id.
    pub asset: String,
    /// The candles, oldest first.
    pub candles: Vec<CandleDto>,
    /// Where the next page starts (`from` for the next call), when more candles are in range.
    pub next_from: Option<String>,
}

/// `GET /v1/assets/{asset}/forecast/volatility`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VolatilityQuery {
    /// Horizons wanted, hours, comma-separated, each once (`4,24`; default all the model serves).
    pub horizons: Option<String>,
}

/// `GET /v1/assets/{asset}/forecast/liquidity`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LiquidityQuery {
    /// Horizons wanted, hours, comma-separated, each once (`4,24`; default all the model serves).
    pub horizons: Option<String>,
    /// Sale size in USD for the expected slippage, in [0, 1e12] (default from the config,
    /// 1,000,000).
    pub sale_size_usd: Option<f64>,
}

/// `GET /v1/assets/{asset}/risk`: the settings of `POST /v1/risk/parameters`, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RiskQuery {
    /// Quantile level of the drawdown, in (0.5, 0.9999] (default from the config, 0.99).
    pub alpha: Option<f64>,
    /// Liquidation window, hours, in [1, 168] (default from the config, 4).
    pub tau_hours: Option<f64>,
    /// User reaction window, hours, in [1, 168] (default from the config, 24).
    pub tau_user_hours: Option<f64>,
    /// Floor of the liquidation bonus, in [0, 1) (default from the config, 0.05).
    pub bonus: Option<f64>,
    /// Margin over the expected slippage for the bonus, in [0, 1) (default from the config).
    pub bonus_margin: Option<f64>,
    /// Size liquidated, USD, in [0, 1e12] (default from the config, 1,000,000).
    pub sale_size_usd: Option<f64>,
    /// Largest relative step from the previous values, in [0, 1] (default from the config).
    /// Refused (422 `invalid_value`) without `previous_liquidation_threshold` or
    /// `previous_max_ltv`.
    pub max_step: Option<f64>,
    /// The caller's current liquidation threshold, in [0, 1], for a bounded change.
    pub previous_liquidation_threshold: Option<f64>,
    /// The caller's current max LTV, in [0, 1], for a bounded change.
    pub previous_max_ltv: Option<f64>,
}
