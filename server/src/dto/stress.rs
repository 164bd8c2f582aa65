//! Bodies of `POST /v1/risk/stress` and their conversion from the simulation's types
//! ([`volcast_core::stress`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use volcast_core::stress::{CountTail, ScenarioRecommendation, ScenarioReport, Tail};

use crate::dto::{CandleDto, ForecastUsed, ModelRef};
use crate::state::InitialMargin;

/// Default simulated paths.
pub const DEFAULT_PATHS: u64 = 10_000;
/// Most simulated paths per request.
pub const MAX_PATHS: u64 = 200_000;
/// Longest horizon, hours.
pub const MAX_HORIZON: u64 = 168;
/// Most positions in a book.
pub const MAX_POSITIONS: usize = 10_000;
/// Most scenarios per request, counting each historical window of `replays`.
pub const MAX_SCENARIOS: usize = 32;
/// Most simulation work per request, in path-steps: `paths x (horizon_hours + ceil(positions /
/// 16))` summed over the scenarios (a replay is one path of its own length). Sized so that a
/// request at the budget finishes well inside the default 10 s timeout with both simulation slots
/// busy on 2 cores (about 3.5 s measured); more is answered 422 `too_much_work`. E.g. 32
/// scenarios of 36,000 paths over 168 h with one position fit (194,688,000), 37,000 do not;
/// so does one of 200,000 paths with 10,000 positions.
pub const MAX_WORK: u64 = 200_000_000;

/// One loan backed by the asset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"collateral": 10.0, "debt": 15000.0, "liquidation_threshold": 0.8}))]
pub struct PositionDto {
    /// Collateral, units of the asset (>= 0).
    pub collateral: f64,
    /// Debt, USD (>= 0).
    pub debt: f64,
    /// The position's own liquidation threshold in (0, 1]; default `default_liquidation_threshold`.
    pub liquidation_threshold: Option<f64>,
}

/// A parametric scenario (historical replays come from the artifact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScenarioDto {
    /// The model's forecast distribution as is.
    Forecast {},
    /// Every hour's variance times `k^2`.
    VolatilityShock {
        /// Volatility multiplier, in (0, 100].
        k: f64,
    },
    /// Slippage times `k`, liquidation delay times `k` (rounded up).
    LiquidityDrain {
        /// Multiplier, in [1, 100].
        k: f64,
    },
    /// The price falls `pct`% at once, then follows the forecast.
    InstantDrop {
        /// Fall in percent, in [0, 100).
        pct: f64,
    },
    /// One of the artifact's historical windows (`stress_scenarios` of `GET /v1/model`).
    Replay {
        /// Window name, e.g. `BTCUSDT 2020-03-12`.
        name: String,
    },
    /// Every historical window the artifact carries.
    Replays {},
}

/// `POST /v1/risk/stress`: one asset's candles and a book of positions backed by it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StressRequest {
    /// Asset id (the collateral).
    pub asset: String,
    /// Hourly candles, oldest first (at least the model's `history_hours`).
    #[serde(deserialize_with = "crate::extract::objects::vec")]
    pub candles: Vec<CandleDto>,
    /// The book: 1 to 10,000 positions, their collateral value at the last close and their
    /// debt each at most 1e15 USD in all.
    #[serde(deserialize_with = "crate::extract::objects::vec")]
    pub positions: Vec<PositionDto>,
    /// Liquidation threshold of positions without their own, in (0, 1] (default 0.8).
    pub default_liquidation_threshold: Option<f64>,
    /// Scenarios (default: forecast, volatility x2 and x3, liquidity drain x3, instant drops of
    /// 20% and 40%, and the artifact's historical replays); at most 32, counting each window
    /// `replays` expands to. The work, `paths x (horizon_hours + ceil(positions / 16))` summed
    /// over the scenarios, is capped at 200,000,000 (422 `too_much_work`).
    #[schema(example = json!([{"kind": "forecast"}, {"kind": "volatility_shock", "k": 2.0}, {"kind": "instant_drop", "pct": 30.0}, {"kind": "replays"}]))]
    #[serde(default, deserialize_with = "crate::extract::objects::option_vec")]
    pub scenarios: Option<Vec<ScenarioDto>>,
    /// Simulated paths per scenario, 1 to 200,000 (default 10,000).
    #[schema(minimum = 1, maximum = 200_000)]
    pub paths: Option<u64>,
    /// Hours simulated, 1 to 168 (default 168).
    #[schema(minimum = 1, maximum = 168)]
    pub horizon_hours: Option<u64>,
    /// Seed (default 1), 0 to 2^64 - 1: same request, same answer.
    #[schema(format = "uint64")]
    pub seed: Option<u64>,
    /// Student-t degrees of freedom of the hourly innovations, in (2, 1000] (default 4).
    pub df: Option<f64>,
    /// Quantile level of the recommended parameters, in (0.5, 0.9999] (default from the config, 0.99).
    pub alpha: Option<f64>,
    /// Liquidation window, hours, in [1, 168] (default from the config, 4); lengthened by the shortage
    /// probability, it is also the sale delay.
    pub tau_hours: Option<f64>,
    /// User reaction window, hours, in [1, 168] (default from the config, 24).
    pub tau_user_hours: Option<f64>,
    /// Floor of the liquidation bonus, in [0, 1) (default from the config, 0.05).
    pub bonus: Option<f64>,
    /// Margin over the expected slippage, in [0, 1) (default from the config, 0.01).
    pub bonus_margin: Option<f64>,
    /// Sale size for the recommended bonus's slippage, USD, in [0, 1e12] (default: the largest
    /// position's collateral value, which must then be in that range too).
    pub sale_size_usd: Option<f64>,
}

/// Mean and tail of a per-path USD total over paths.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TailDto {
    /// Mean.
    pub mean: f64,
    /// 95th percentile: exceeded on 5% of paths.
    pub p95: f64,
    /// 99th percentile: exceeded on 1% of paths.
    pub p99: f64,
    /// Mean of the worst 1% of paths.
    pub es99: f64,
}

impl From<Tail> for TailDto {
    fn from(t: Tail) -> Self {
        Self {
            mean: t.mean,
            p95: t.p95,
            p99: t.p99,
            es99: t.es99,
        }
    }
}

/// Positions liquidated per path.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CountTailDto {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl From<CountTail> for CountTailDto {
    fn from(t: CountTail) -> Self {
        Self {
            mean: t.mean,
            p50: t.p50,
            p95: t.p95,
            p99: t.p99,
        }
    }
}

/// What the risk policy recommends under a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StressRecommendationDto {
    /// LT, with `LT (1 + LB) <= 1`.
    pub liquidation_threshold: f64,
    /// Max LTV, in [0, LT].
    pub max_ltv: f64,
    /// LB = max(bonus, slippage + margin).
    pub liquidation_bonus: f64,
    /// D(alpha, tau): the largest over the windows up to tau (README, "Risk engine").
    pub maintenance_margin: f64,
    /// `max(D(alpha, tau_user), maintenance_margin)`: never below the maintenance margin (the
    /// same rule as a risk answer's). Answers recorded before stop 62 (no
    /// `initial_margin_hours`) gave `D(alpha, tau_user)` alone, and replay so.
    pub initial_margin: f64,
    /// The window `maintenance_margin` was taken at, hours: the scenario's liquidation window,
    /// or a shorter one where the drawdown is larger. Absent in records made before stop 61,
    /// whose drawdowns were taken at the window itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_hours: Option<f64>,
    /// The same for `D(alpha, tau_user)`, at most `tau_user_hours`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_user_hours: Option<f64>,
    /// The variance over `drawdown_hours` under the scenario. Absent in records made before
    /// stop 62.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_variance: Option<f64>,
    /// The variance over `drawdown_user_hours` under the scenario. Absent in records made
    /// before stop 62.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_user_variance: Option<f64>,
    /// The window `initial_margin` was taken at: `drawdown_user_hours`, or `drawdown_hours`
    /// where the maintenance margin is the larger. Absent in records made before stop 62.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_margin_hours: Option<f64>,
    /// Variance over the liquidation window under the scenario.
    pub variance_tau: f64,
    /// Variance over the user window under the scenario.
    pub variance_tau_user: f64,
    /// Expected slippage of the sale size under the scenario (null without an illiquidity).
    pub slippage: Option<f64>,
}

impl StressRecommendationDto {
    /// The engine's recommendation with the initial margin `margin` says.
    #[must_use]
    pub fn of(r: ScenarioRecommendation, margin: InitialMargin) -> Self {
        Self {
            liquidation_threshold: r.liquidation_threshold,
            max_ltv: r.max_ltv,
            liquidation_bonus: r.liquidation_bonus,
            maintenance_margin: r.maintenance_margin,
            initial_margin: margin.of(r.drawdown_user, r.initial_margin),
            drawdown_hours: r.drawdown_hours,
            drawdown_user_hours: r.drawdown_user_hours,
            drawdown_variance: r.drawdown_variance.and_then(|v| margin.said(v)),
            drawdown_user_variance: r.drawdown_user_variance.and_then(|v| margin.said(v)),
            initial_margin_hours: r.initial_margin_hours.and_then(|h| margin.said(h)),
            variance_tau: r.variance_tau,
            variance_tau_user: r.variance_tau_user,
            slippage: r.slippage,
        }
    }
}

/// One scenario's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScenarioResultDto {
    /// Label, e.g. `volatility x2` or `replay BTCUSDT 2020-03-12`.
    pub scenario: String,
    /// Paths simulated (1 for a replay: it is deterministic).
    pub paths: usize,
    /// Share of paths with at least one liquidation.
    pub liquidation_probability: f64,
    /// Liquidations at risk: USD value of collateral liquidated per path.
    pub liquidations_at_risk: TailDto,
    /// Bad debt at risk: debt not covered by the liquidation sales per path, USD.
    pub bad_debt_at_risk: TailDto,
    /// Positions liquidated per path.
    pub liquidated_positions: CountTailDto,
    /// Sale delay after the trigger, hours: the sale takes the lowest low of the trigger hour
    /// and of the next `liquidation_delay_hours` within the horizon (a delay longer than what is
    /// left of the horizon, as under a strong `liquidity_drain`, is cut there: ask for a longer
    /// `horizon_hours` to see the whole sale).
    pub liquidation_delay_hours: usize,
    /// Price impact per USD sold.
    pub slippage_per_usd: f64,
    /// Variance of the log return over the horizon.
    pub horizon_variance: f64,
    /// A replay whose window is longer than the horizon applies the `horizon_hours` consecutive
    /// hours of it whose lowest low falls furthest below the close before them: the hour of the
    /// window (0-based) they start at. Absent when the whole window fits in the horizon (it is
    /// applied from its first hour, and stays flat after its end), for other scenarios, and from
    /// answers recorded before stop 59, which applied a longer window's first hours (a crash
    /// replayed at a short horizon could show no loss) and which replay that way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_from_hour: Option<usize>,
    /// The parameters the engine recommends under the scenario.
    pub recommended: StressRecommendationDto,
    /// The sale's slippage under the scenario is `>= 1`: it cannot be liquidated, so the
    /// recommended LT and max LTV are 0 and the bonus is at its maximum, 1.
    pub liquidation_blocked: bool,
}

impl ScenarioResultDto {
    /// A scenario's report, its recommendation with the initial margin `margin` says.
    #[must_use]
    pub fn of(r: ScenarioReport, margin: InitialMargin) -> Self {
        Self {
            scenario: r.scenario,
            paths: r.summary.paths,
            liquidation_probability: r.summary.liquidation_probability,
            liquidations_at_risk: r.summary.liquidations_at_risk.into(),
            bad_debt_at_risk: r.summary.bad_debt_at_risk.into(),
            liquidated_positions: r.summary.liquidated_positions.into(),
            liquidation_delay_hours: r.liquidation_delay_hours,
            slippage_per_usd: r.slippage_per_usd,
            horizon_variance: r.horizon_variance,
            replay_from_hour: r.replay_from_hour,
            liquidation_blocked: r.recommendation.liquidation_blocked,
            recommended: StressRecommendationDto::of(r.recommendation, margin),
        }
    }
}

/// The book's totals at the origin price.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BookDto {
    /// Positions.
    pub positions: usize,
    /// Collateral value, USD.
    pub collateral_usd: f64,
    /// Debt, USD.
    pub debt_usd: f64,
}

/// Answer of `POST /v1/risk/stress`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StressResponse {
    /// The decision's id in the signed decision log (`GET /v1/decisions/{id}`); absent when the
    /// service runs without a store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    /// The model that answered.
    pub model: ModelRef,
    /// Present only while the gate holds the fallback (`model.policy.name` `fallback_har`) but
    /// the model's policy was served, saying why: the artifact has no HAR calibration, or HAR's
    /// variance does not exist on this window (before stop 65 such an answer named the fallback
    /// alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_policy: Option<crate::dto::ServedPolicy>,
    /// Asset id.
    pub asset: String,
    /// Forecast origin, RFC 3339.
    pub origin: String,
    /// Close at the origin.
    pub price: f64,
    /// Hours simulated.
    pub horizon_hours: usize,
    /// Seed.
    pub seed: u64,
    /// Student-t degrees of freedom.
    pub df: f64,
    /// Forecasts used.
    pub forecasts: Vec<ForecastUsed>,
    /// Horizon whose liquidity forecast was used.
    pub liquidity_horizon_hours: usize,
    /// Current mean illiquidity at that horizon, when computable.
    pub current_illiquidity: Option<f64>,
    /// Expected price impact per USD sold, `M (1 + p) / 1e6` (0 without an illiquidity).
    pub slippage_per_usd: f64,
    /// `tau (1 + p)`, hours, and at least `h (1 + p_h)` for each served horizon `h` below tau, as
    /// the risk route's (records before stop 61: `tau (1 + p)` alone).
    pub tau_effective_hours: f64,
    /// The book.
    pub book: BookDto,
    /// One per scenario, in order.
    pub scenarios: Vec<ScenarioResultDto>,
    /// The anomaly detector's flags on the collateral's recent hours and what they did
    /// (`--anomaly-action tighten` lengthens the liquidation window behind every scenario's
    /// recommendation and liquidation delay, as on `/v1/risk/parameters`); absent when no
    /// detector is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<crate::dto::anomaly::AnomalyContext>,
    /// How each hour's low was drawn: `hour_drawn`, the minimum of a Brownian bridge between the
    /// hour's closes at the variance the hour drew (with Student-t innovations, a tail hour dips
    /// as deep as its move implies). Absent from answers recorded before stop 50, whose bridge
    /// took the hour's mean variance (and which replay that way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lows: Option<String>,
    /// Which sale a liquidation's price impact `slippage_per_usd x v` is charged on:
    /// `sold_together`, the positions a path liquidates in one hour are sold together, and each
    /// pays the impact of their total value (so the book's bad debt does not depend on how its
    /// loans are split). Absent from answers recorded before stop 55, which charged each
    /// position the impact of its own sale only (and which replay that way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<String>,
}
