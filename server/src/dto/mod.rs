//! Request and response bodies of the `/v1` API, with their OpenAPI schemas.
//!
//! Every forecast and risk route takes one asset (`asset` + `candles`) or a batch (`items`), and
//! always answers `items`, one per asset in request order, beside the model's id and hash.

pub mod anomaly;
pub mod assets;
pub mod audit;
pub mod model;
pub mod oracle;
pub mod policy;
pub mod stress;
pub mod validation;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use volcast_core::candles::Candle;

pub use model::{
    AdaptiveDto, DataFileDto, FeaturesDto, Health, HorizonMetricsDto, ModelCard, RecalibrationDto,
};

/// One hourly candle, as in the data files (SPEC "Input data").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"open_time": 1_704_063_600_000_i64, "open": 42000.0, "high": 42150.5, "low": 41890.0, "close": 42100.0, "volume": 812.4, "quote_volume": 34_170_000.0}))]
pub struct CandleDto {
    /// Candle open time, Unix milliseconds UTC, on a whole hour. Closed hours only: a last
    /// candle that closes more than 10 s after the server's clock is still forming and refused
    /// (422 `invalid_value`).
    pub open_time: i64,
    /// First trade price (> 0).
    pub open: f64,
    /// Highest trade price (>= low).
    pub high: f64,
    /// Lowest trade price (> 0).
    pub low: f64,
    /// Last trade price, in [low, high].
    pub close: f64,
    /// Traded amount in the base asset (>= 0).
    pub volume: f64,
    /// Traded amount in USD(T) (>= 0).
    pub quote_volume: f64,
    /// Number of trades (SPEC's optional field): accepted and not used (the model does not read
    /// it), so it is neither checked nor kept in the decision log, nor in answers.
    // Never written, as `skip_serializing` would do; that attribute also dropped the field from
    // the published schema, whose `additionalProperties: false` then forbade what is accepted.
    #[serde(default, skip_serializing_if = "never_written")]
    pub trades: Option<f64>,
}

/// [`CandleDto::trades`] is never written.
fn never_written(_: &Option<f64>) -> bool {
    true
}

impl From<Candle> for CandleDto {
    fn from(c: Candle) -> Self {
        Self {
            open_time: c.open_time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            quote_volume: c.quote_volume,
            trades: None,
        }
    }
}

impl From<CandleDto> for Candle {
    fn from(c: CandleDto) -> Self {
        Self {
            open_time: c.open_time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            quote_volume: c.quote_volume,
        }
    }
}

/// One asset and its recent hourly candles, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetCandles {
    /// Asset id, e.g. `BTCUSDT` (1 to 64 characters).
    pub asset: String,
    /// Hourly candles, oldest first; the last one's close is the forecast origin. At least the
    /// model's `history_hours` candles (`GET /v1/model`; 889 for the shipped features).
    #[serde(deserialize_with = "crate::extract::objects::vec")]
    pub candles: Vec<CandleDto>,
}

/// `POST /v1/forecast/volatility` and `/v1/forecast/liquidity`: one asset (`asset` and
/// `candles`) or a batch (`items`), not both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForecastRequest {
    /// Single shape: the asset id.
    pub asset: Option<String>,
    /// Single shape: its candles, oldest first.
    #[serde(default, deserialize_with = "crate::extract::objects::option_vec")]
    pub candles: Option<Vec<CandleDto>>,
    /// Batch shape: several assets.
    #[serde(default, deserialize_with = "crate::extract::objects::option_vec")]
    pub items: Option<Vec<AssetCandles>>,
    /// Horizons wanted, hours, each once (default: all the model serves, 4, 24 and 168); the
    /// answers come in the order asked.
    pub horizons: Option<Vec<u64>>,
    /// Liquidity only (refused on the volatility route): sale size in USD for the expected
    /// slippage (default from the config, 1,000,000).
    pub sale_size_usd: Option<f64>,
}

/// The caller's current values, for a bounded change: at least one of the two (an empty
/// object bounds nothing and is refused, 422 `invalid_value`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Previous {
    /// Current liquidation threshold, in [0, 1].
    pub liquidation_threshold: Option<f64>,
    /// Current max LTV, in [0, 1].
    pub max_ltv: Option<f64>,
}

/// One asset of a batch risk request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskItem {
    /// Asset id.
    pub asset: String,
    /// Hourly candles, oldest first (see [`AssetCandles`]).
    #[serde(deserialize_with = "crate::extract::objects::vec")]
    pub candles: Vec<CandleDto>,
    /// The caller's current values for this asset.
    #[serde(default, deserialize_with = "crate::extract::objects::option")]
    pub previous: Option<Previous>,
}

/// `POST /v1/risk/parameters`: one asset or a batch; the settings apply to every asset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskRequest {
    /// Single shape: the asset id.
    pub asset: Option<String>,
    /// Single shape: its candles, oldest first.
    #[serde(default, deserialize_with = "crate::extract::objects::option_vec")]
    pub candles: Option<Vec<CandleDto>>,
    /// Single shape: the caller's current values.
    #[serde(default, deserialize_with = "crate::extract::objects::option")]
    pub previous: Option<Previous>,
    /// Batch shape: several assets.
    #[serde(default, deserialize_with = "crate::extract::objects::option_vec")]
    pub items: Option<Vec<RiskItem>>,
    /// Quantile level of the drawdown, in (0.5, 0.9999] (default from the config, 0.99).
    pub alpha: Option<f64>,
    /// Liquidation window, hours, in [1, 168] (default from the config, 4). An active anomaly flag with
    /// `--anomaly-action tighten` doubles it (up to 168 h), and the shortage probability then
    /// lengthens that up to twice: up to four times the one asked.
    pub tau_hours: Option<f64>,
    /// User reaction window, hours, in [1, 168] (default from the config, 24).
    pub tau_user_hours: Option<f64>,
    /// Floor of the liquidation bonus, in [0, 1) (default from the config, 0.05).
    pub bonus: Option<f64>,
    /// Margin over the expected slippage for the bonus, in [0, 1) (default from the config, 0.01).
    pub bonus_margin: Option<f64>,
    /// Size liquidated, USD, for the expected slippage (default from the config, 1,000,000).
    pub sale_size_usd: Option<f64>,
    /// Largest relative step from `previous`, in [0, 1] (default from the config, 0.1). A
    /// previous value of 0 bounds nothing: there is no relative step from 0. Refused (422
    /// `invalid_value`) when no previous value is given anywhere in the request.
    pub max_step: Option<f64>,
}

/// Which model answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModelRef {
    /// Artifact id.
    pub id: String,
    /// SHA-256 over the artifact's weights, config and metadata.
    pub hash: String,
    /// The policy served: the model's, or `fallback_har` while the champion/challenger gate
    /// holds the fallback (README, "Continuous validation").
    #[serde(default)]
    pub policy: policy::PolicyStatus,
}

/// A variance with its volatility and annualized volatility.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VarianceDto {
    /// Variance of the summed hourly log returns over the horizon.
    pub variance: f64,
    /// `sqrt(variance)`.
    pub volatility: f64,
    /// `sqrt(variance * 8760 / H)`.
    pub annualized_volatility: f64,
}

/// One quantile of realized variance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuantileDto {
    /// Level in (0, 1).
    pub level: f64,
    /// RV quantile.
    pub variance: f64,
    /// Its square root.
    pub volatility: f64,
}

/// One horizon of a volatility forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolatilityHorizon {
    /// Horizon, hours.
    pub horizon_hours: usize,
    /// The model's forecast.
    #[serde(flatten)]
    pub model: VarianceDto,
    /// RV quantiles.
    pub quantiles: Vec<QuantileDto>,
    /// The HAR-RV baseline's forecast on the same candles (null when a regressor is missing).
    pub har: Option<VarianceDto>,
    /// Which of the two the service serves at this horizon: `model`, or `har` while the
    /// champion/challenger gate holds the fallback (`model.policy`) and HAR's forecast exists.
    #[schema(example = "model")]
    pub served: String,
}

/// Volatility forecasts for one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetVolatility {
    /// Asset id.
    pub asset: String,
    /// Forecast origin: close time of the last candle, RFC 3339.
    pub origin: String,
    /// Per horizon.
    pub horizons: Vec<VolatilityHorizon>,
}

/// Answer of `POST /v1/forecast/volatility`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolatilityResponse {
    /// The model that answered.
    pub model: ModelRef,
    /// One per asset, in request order.
    pub items: Vec<AssetVolatility>,
}

/// One horizon of a liquidity forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiquidityHorizon {
    /// Horizon H, hours.
    pub horizon_hours: usize,
    /// Probability that M_H(t+H) exceeds twice its 30-day median (SPEC "Liquidity shortage").
    pub shortage_probability: f64,
    /// The baseline's probability (logistic map of M_H(t) / median), when computable.
    pub baseline_shortage_probability: Option<f64>,
    /// M_H(t): mean Amihud illiquidity (|r| per $1M traded) over the last H hours.
    pub current_illiquidity: Option<f64>,
    /// `M_H(t) (1 + p)`: a shortage doubles illiquidity.
    pub expected_illiquidity: Option<f64>,
    /// `expected_illiquidity * sale_size_usd / 1e6`: fraction of the price lost selling that size.
    /// Linear in the size, so it may exceed 1; see `liquidation_blocked`.
    pub expected_slippage: Option<f64>,
    /// `expected_slippage` is 1 or more: a sale of this size would lose the whole price, so it
    /// cannot be liquidated (the risk routes then answer LT = max LTV = 0 and the maximum bonus).
    /// Null when the illiquidity is unknown (fewer than 90% of the H hours with quote volume),
    /// where the risk routes refuse a sale read at this horizon.
    pub liquidation_blocked: Option<bool>,
}

/// Liquidity forecasts for one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetLiquidity {
    /// Asset id.
    pub asset: String,
    /// Forecast origin, RFC 3339.
    pub origin: String,
    /// Sale size used for the slippage, USD.
    pub sale_size_usd: f64,
    /// Per horizon.
    pub horizons: Vec<LiquidityHorizon>,
}

/// Answer of `POST /v1/forecast/liquidity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiquidityResponse {
    /// The model that answered.
    pub model: ModelRef,
    /// One per asset, in request order.
    pub items: Vec<AssetLiquidity>,
}

/// The recommended protocol parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RiskParameters {
    /// LT, with `LT (1 + LB) <= 1`.
    pub liquidation_threshold: f64,
    /// Max LTV, in [0, LT].
    pub max_ltv: f64,
    /// LB.
    pub liquidation_bonus: f64,
    /// `D(alpha, tau_eff)`, in [0, 1].
    pub maintenance_margin: f64,
    /// `max(D(alpha, tau_user), maintenance_margin)`, in [0, 1]: a position opened at its
    /// initial margin is never already below maintenance (a liquidation window longer than the
    /// user's, as a shortage makes it, gave a smaller `D(alpha, tau_user)`). Records made
    /// before stop 62 (no `derivation.initial_margin_hours`) served `D(alpha, tau_user)` alone.
    pub initial_margin: f64,
}

/// What another drawdown model would recommend with the same bonus.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Comparison {
    /// D(alpha, tau_eff) under that model.
    pub drawdown: f64,
    /// Its LT.
    pub liquidation_threshold: f64,
    /// Its max LTV.
    pub max_ltv: f64,
}

/// The forecasts a recommendation used, per horizon.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ForecastUsed {
    /// Horizon, hours.
    pub horizon_hours: usize,
    /// The model's variance.
    pub variance: f64,
    /// HAR's variance, when computable.
    pub har_variance: Option<f64>,
    /// The model's shortage probability.
    pub shortage_probability: f64,
}

/// How a recommendation was derived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Derivation {
    /// Quantile level.
    pub alpha: f64,
    /// The liquidation window used, hours: the one asked, doubled while an anomaly flag
    /// tightens (`anomaly.effect` says from what).
    pub tau_hours: f64,
    /// `tau (1 + p)`, p the shortage probability at `liquidity_horizon_hours`; at least
    /// `h (1 + p_h)` for each served horizon `h` below `tau_hours` (`forecasts`), so a longer
    /// tau never gets a shorter one (records before stop 61: `tau (1 + p)` alone).
    pub tau_effective_hours: f64,
    /// User reaction window, hours.
    pub tau_user_hours: f64,
    /// Horizon whose liquidity forecast was used: the shortest served `>= tau`.
    pub liquidity_horizon_hours: usize,
    /// Shortage probability at that horizon.
    pub shortage_probability: f64,
    /// Forecasts used.
    pub forecasts: Vec<ForecastUsed>,
    /// Variance served over `tau_effective_hours`: the model's, or HAR's while the gate serves
    /// `fallback_har` (`policy.name`).
    pub variance_tau: f64,
    /// The same over `tau_user_hours`.
    pub variance_tau_user: f64,
    /// How `D` was obtained: `calibrated` (the artifact's measured quantiles of the scale-free
    /// fall, see the README) or `reflection-normal` (an artifact without a calibration).
    pub drawdown_rule: String,
    /// `u_alpha(t)` at `t = drawdown_hours` (`tau_eff` in records without it), the multiplier of
    /// `sqrt(V)^g`: the calibrated quantile of the scale-free fall `L / sqrt(V)^g`, or
    /// `z_{(1+alpha)/2}` for the reflection rule.
    pub drawdown_multiplier: f64,
    /// `g`, the exponent of `sqrt(V)`: measured with the calibration (below 1 when large
    /// forecasts overstate how far large falls go), 1 for the uncalibrated rules.
    pub drawdown_exponent: f64,
    /// Origins the calibration was measured on, when calibrated.
    pub calibration_window: Option<String>,
    /// `D(alpha, tau_eff)`: the fall within `tau_eff` hours, so the largest of
    /// `1 - exp(-u_alpha(t) sqrt(V(t))^g)` over the windows `t <= tau_eff`: reached at
    /// `t = drawdown_hours`, with `u = drawdown_multiplier`, `V(t) = drawdown_variance` and `g`
    /// above. Records without `drawdown_hours` (before stop 61) took `t = tau_eff` alone, with
    /// `V = variance_tau`.
    pub drawdown: f64,
    /// `D(alpha, tau_user)`, the same way over `t <= tau_user_hours`.
    pub drawdown_user: f64,
    /// The window `t` where `drawdown` is reached: `tau_effective_hours`, or a shorter one where
    /// the forecast's drawdown is larger (a multiplier falling with the window faster than the
    /// variance rises, or a variance curve that falls). Absent in records made before stop 61.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_hours: Option<f64>,
    /// The variance over `drawdown_hours` (`variance_tau` when that is `tau_effective_hours`).
    /// Absent in records made before stop 61.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_variance: Option<f64>,
    /// The same window for `drawdown_user`, at most `tau_user_hours`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_user_hours: Option<f64>,
    /// The variance over `drawdown_user_hours`, so that `drawdown_user` is
    /// `1 - exp(-drawdown_user_multiplier sqrt(drawdown_user_variance)^g)`. Absent in records
    /// made before stop 62.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_user_variance: Option<f64>,
    /// `u_alpha(t)` at `t = drawdown_user_hours`. Absent in records made before stop 62.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_user_multiplier: Option<f64>,
    /// The window the initial margin was taken at: `drawdown_user_hours`, or `drawdown_hours`
    /// where the maintenance margin is the larger (the initial margin is never below it).
    /// Absent in records made before stop 62, whose initial margin was `drawdown_user` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_margin_hours: Option<f64>,
    /// Sale size, USD.
    pub sale_size_usd: f64,
    /// Expected illiquidity at the liquidity horizon, when computable.
    pub expected_illiquidity: Option<f64>,
    /// Expected slippage of the sale, when computable.
    pub expected_slippage: Option<f64>,
    /// Bonus floor asked for.
    pub bonus_floor: f64,
    /// Margin over the slippage.
    pub bonus_margin: f64,
    /// LT and max LTV before any bounded change.
    pub unbounded: RiskParameters,
    /// The previous values given, if any.
    pub previous: Option<Previous>,
    /// Largest relative step applied.
    pub max_step: Option<f64>,
    /// Whether the step bound changed LT or max LTV.
    pub step_limited: bool,
    /// With `previous`: how the step is taken, `keeps_user_buffer_unbounded_from_zero` (max LTV
    /// at most `LT - D(alpha, tau_user)` with the bounded LT, so it may fall faster than
    /// `max_step`, never rise faster; a previous value of 0 bounds nothing, there being no
    /// relative step from 0). `keeps_user_buffer` in records made before stop 59, where a
    /// previous value of 0 held its parameter at 0. Absent without `previous`, and in records
    /// made before 2026-12-06, whose max LTV after the step was kept at most LT only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_rule: Option<String>,
    /// Set when max LTV fell further below `previous.max_ltv` than `max_step` allows: the
    /// user's buffer `D(alpha, tau_user)` under the bounded LT wins over the step; says so.
    /// (`step_limited` says whether the step held a value back; this, that the buffer moved one
    /// past it.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_overridden: Option<String>,
    /// Set when the expected slippage is `>= 1`: the size cannot be liquidated, so LT and max LTV
    /// are 0 (whatever `previous`) and the bonus is at its maximum, 1; says why.
    pub liquidation_blocked: Option<String>,
    /// HAR variance, drawdown calibrated the same way as the model's (when the artifact has it).
    pub har_calibrated: Option<Comparison>,
    /// HAR variance, reflection-normal drawdown.
    pub har_reflection: Option<Comparison>,
    /// HAR variance, plain normal drawdown of the close (as SPEC's GARCH-normal policy; the
    /// artifact carries no GARCH parameters).
    pub har_plain_normal: Option<Comparison>,
    /// Which policy gave the parameters: the model's, or the gate's fallback (HAR's variance
    /// with HAR's calibrated rule), and why.
    pub policy: ServedPolicy,
    /// The anomaly detector's flags on the collateral's recent hours and what they did
    /// (`--anomaly-action`); absent when no detector is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<anomaly::AnomalyContext>,
}

/// Which policy gave an answer's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServedPolicy {
    /// `model` or `fallback_har`.
    pub name: String,
    /// Why: the gate's reason, and for this answer which was served where the two differ.
    pub reason: String,
    /// While the fallback is served: what the model's own policy would have given.
    pub model: Option<Comparison>,
}

/// Recommendation for one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetRisk {
    /// The decision's id in the signed decision log (`GET /v1/decisions/{id}`); absent when the
    /// service runs without a store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    /// Asset id.
    pub asset: String,
    /// Forecast origin, RFC 3339.
    pub origin: String,
    /// The parameters to set.
    pub parameters: RiskParameters,
    /// How they were derived.
    pub derivation: Derivation,
}

/// Answer of `POST /v1/risk/parameters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RiskResponse {
    /// The model that answered.
    pub model: ModelRef,
    /// One per asset, in request order.
    pub items: Vec<AssetRisk>,
}
