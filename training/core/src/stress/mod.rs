//! Stress simulation of a lending book: hourly price paths from the model's forecast
//! distribution (or a named scenario), the liquidations they trigger, and the bad debt left when
//! a liquidation's sale does not cover the debt.
//!
//! **Paths.** Hourly log closes `y_h = y_{h-1} + sigma_h eps_h` with zero drift, `sigma_h^2` the
//! hour's variance from the forecast curve ([`crate::curve::VarianceCurve::hourly`]) and `eps`
//! Student-t with `df` degrees of freedom standardised to unit variance (normal for
//! `df = inf`). Each hour's low is drawn from the minimum of a Brownian bridge between the two
//! closes, `(a + b - sqrt((b - a)^2 - 2 s^2 ln U)) / 2`, so running minima are not biased
//! high by looking at closes only; `s^2` is the variance the hour drew (with Student-t
//! innovations, `sigma^2` times the square of its mixing factor: a tail hour dips as deep as
//! its move implies), [`Bridge`].
//!
//! **Liquidations.** A position (collateral `c` units, debt `d` USD, threshold `LT`) is
//! liquidated at the first hour whose low `P` makes `c P LT < d`. The whole collateral is sold at
//! the lowest low of that hour and the next `liquidation_delay_hours` (within the horizon), for
//! `v = c * that low`, less a price impact `min(1, slippage_per_usd * V)` where `V` is the value
//! of every position sold in the same hour ([`Impact::SoldTogether`]; `V = v` under the
//! [`Impact::PerPosition`] rule of answers recorded before stop 55). Bad debt is
//! `max(0, d - v (1 - impact))`.
//!
//! **Report.** Per path: the USD value of collateral liquidated (*liquidations at risk*), the
//! bad debt and the number of positions liquidated. Over paths: mean, 95th and 99th percentiles
//! (VaR-style: the value a path total exceeds with 5% / 1% probability) and the 99% expected
//! shortfall, the probability of any liquidation, and the parameters the engine would recommend
//! under the scenario ([`ScenarioPolicy`]).
//!
//! **Scenarios.** [`Scenario::Forecast`] is the model as is; `VolatilityShock { k }` multiplies
//! every hour's variance by `k^2`; `LiquidityDrain { k }` multiplies slippage by `k` and the
//! liquidation delay by `k` (rounded up); `InstantDrop { pct }` opens the first hour `pct`% lower
//! and then follows the forecast; `Replay` applies a historical window's hourly closes and lows
//! (relative to the previous close) to today's price, deterministically: one path, no noise.
//!
//! Deterministic for a seed whatever the number of threads: paths are simulated in chunks of
//! [`PATHS_PER_CHUNK`], each with its own seeded stream. The training crate's `stress_gpu` draws
//! the same model on a burn device (wgpu) and settles the paths with the same code.

pub mod replay;
mod report;
mod rng;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use replay::{REPLAY_COUNT, REPLAY_HORIZON, ReplayWindow, market_stress_scenarios, worst_windows};
pub use report::{
    CountTail, ScenarioPolicy, ScenarioRecommendation, ScenarioReport, Simulator, Summary, Tail,
    rank_quantile, run, summarize,
};
use rng::{GammaShape, Sampler};

/// Paths per seeded stream (and per rayon task).
pub const PATHS_PER_CHUNK: usize = 1024;
/// Student-t degrees of freedom of the innovations unless told otherwise.
pub const DEFAULT_DF: f64 = 4.0;
/// Liquidation threshold of positions that do not carry their own.
pub const DEFAULT_LIQUIDATION_THRESHOLD: f64 = 0.8;

/// The model distribution a simulation draws from.
#[derive(Debug, Clone, PartialEq)]
pub struct StressInput {
    /// Close at the origin, USD.
    pub price: f64,
    /// Variance of the log return of each hour `1..=horizon` (the horizon is its length).
    pub hourly_variance: Vec<f64>,
    /// Student-t degrees of freedom of the innovations (> 2); infinity for normal ones.
    pub df: f64,
    /// Expected fractional price impact per USD sold (expected illiquidity / 1e6).
    pub slippage_per_usd: f64,
    /// Hours after the trigger hour over which the sale takes the lowest low.
    pub liquidation_delay_hours: usize,
    /// Simulated paths.
    pub paths: usize,
    /// Seed.
    pub seed: u64,
    /// How each hour's low is drawn between its closes.
    pub bridge: Bridge,
    /// Which sale a liquidation's price impact is charged on.
    pub impact: Impact,
    /// Which hours of a replay window longer than the horizon are applied.
    pub replay_cut: ReplayCut,
}

/// Which `horizon` hours of a replay window longer than the horizon are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayCut {
    /// The consecutive hours whose lowest low falls furthest below the close before them (the
    /// earliest such, on a tie): a replay names a crash, and its window starts days before the
    /// worst of it.
    #[default]
    DeepestFall,
    /// The window's first hours: how replays were cut until stop 59, kept so that stress answers
    /// recorded then replay identically. A crash replayed at a horizon shorter than its window
    /// could show no loss at all (the fall lay past the hours applied).
    First,
}

/// Where the `horizon` hours of `path` (close and low of each hour, in log, relative to the
/// close before) with the deepest fall start: the offset minimising the lowest low of its hours
/// relative to the close before its first. 0 when the path is no longer than `horizon`.
#[must_use]
pub fn deepest_fall(path: &[(f64, f64)], horizon: usize) -> usize {
    if horizon == 0 || path.len() <= horizon {
        return 0;
    }
    // `level[i]`: log close after hour i-1 (0 before the first hour).
    let mut level = Vec::with_capacity(path.len() + 1);
    level.push(0.0);
    for (close, _) in path {
        level.push(level.last().copied().unwrap_or(0.0) + close);
    }
    let fall = |from: usize| {
        (from..from + horizon)
            .map(|h| level[h] + path[h].1 - level[from])
            .fold(f64::INFINITY, f64::min)
    };
    let mut best = (0, fall(0));
    for from in 1..=path.len() - horizon {
        let f = fall(from);
        if f < best.1 {
            best = (from, f);
        }
    }
    best.0
}

/// Which sale a liquidation's price impact `slippage_per_usd x v` is charged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Impact {
    /// The positions a path liquidates in one hour are sold together over the same hours, so
    /// each pays the impact of their total `V`: `v (1 - min(1, slippage_per_usd x V))`. A book's
    /// bad debt then does not depend on how its loans are split (one loan of 1 M USD and a
    /// thousand identical loans of 1,000 USD liquidate together and pay the same impact).
    #[default]
    SoldTogether,
    /// Each position pays the impact of its own sale only, whatever else is sold with it: how
    /// stress answers were settled until stop 55, kept so that those recorded then replay
    /// identically. Understates bad debt when many positions are liquidated at once.
    PerPosition,
}

/// How each hour's low is drawn: the minimum of a Brownian bridge between the hour's two closes,
/// at which variance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bridge {
    /// The variance the hour drew: with Student-t innovations `Z scale / sqrt(G)`, the hour is
    /// Brownian with variance `var scale^2 / G` given `G`, so a tail hour dips as deep below its
    /// close as its move implies (and a calm hour as little).
    #[default]
    HourDrawn,
    /// The hour's mean variance `var` whatever it drew: how lows were drawn until stop 50, kept
    /// so that stress answers recorded then replay identically. Too shallow in tail hours.
    MeanVariance,
}

/// One borrower's position. Read strictly: a misspelt field (`liquidation_treshold`) is an
/// error, never a position simulated at the book's default threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// Collateral, units of the asset (>= 0).
    pub collateral: f64,
    /// Debt, USD (>= 0).
    pub debt: f64,
    /// The position's own liquidation threshold, in (0, 1]; the book's default otherwise.
    #[serde(default)]
    pub liquidation_threshold: Option<f64>,
}

/// The positions backed by one collateral asset (read strictly, as [`Position`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Book {
    /// Positions.
    pub positions: Vec<Position>,
    /// Threshold of positions without their own.
    #[serde(default = "default_threshold")]
    pub default_liquidation_threshold: f64,
}

fn default_threshold() -> f64 {
    DEFAULT_LIQUIDATION_THRESHOLD
}

impl Book {
    /// The largest position's collateral value at `price`, USD: the default sale size of the
    /// recommended bonus.
    #[must_use]
    pub fn largest_value(&self, price: f64) -> f64 {
        self.positions
            .iter()
            .map(|p| p.collateral * price)
            .fold(0.0, f64::max)
    }
}

/// A named way to stress the forecast distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scenario {
    /// The model's distribution as is.
    Forecast,
    /// Every hour's variance times `k^2`.
    VolatilityShock {
        /// Volatility multiplier (> 0).
        k: f64,
    },
    /// Slippage times `k`, liquidation delay times `k` rounded up.
    LiquidityDrain {
        /// Multiplier (>= 1).
        k: f64,
    },
    /// The price falls `pct`% at the start, then follows the forecast.
    InstantDrop {
        /// Fall, percent, in [0, 100).
        pct: f64,
    },
    /// A historical window's path applied to today's price (one deterministic path).
    Replay {
        /// Name, e.g. `BTCUSDT 2020-03-12`.
        name: String,
        /// Per hour: `(ln close_h / close_{h-1}, ln low_h / close_{h-1})`.
        log_returns: Vec<(f64, f64)>,
    },
}

impl Scenario {
    /// A short label for tables and reports.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Forecast => "forecast".to_owned(),
            Self::VolatilityShock { k } => format!("volatility x{k}"),
            Self::LiquidityDrain { k } => format!("liquidity drain x{k}"),
            Self::InstantDrop { pct } => format!("instant drop {pct}%"),
            Self::Replay { name, .. } => format!("replay {name}"),
        }
    }

    /// The parametric scenarios run by default: the forecast, volatility x2 and x3, liquidity
    /// drain x3, instant drops of 20% and 40%.
    #[must_use]
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::Forecast,
            Self::VolatilityShock { k: 2.0 },
            Self::VolatilityShock { k: 3.0 },
            Self::LiquidityDrain { k: 3.0 },
            Self::InstantDrop { pct: 20.0 },
            Self::InstantDrop { pct: 40.0 },
        ]
    }
}

/// Input the simulation cannot use. `field` names it (`positions[3].debt`, `df`...).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct StressError {
    /// The offending input.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> StressError {
    StressError {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks the input, the book and a scenario.
///
/// # Errors
/// The first problem found.
pub fn validate(input: &StressInput, book: &Book, scenario: &Scenario) -> Result<(), StressError> {
    if !(input.price.is_finite() && input.price > 0.0) {
        return Err(bad("price", "must be finite and > 0"));
    }
    if input.hourly_variance.is_empty() {
        return Err(bad("hourly_variance", "the horizon must be at least one hour"));
    }
    if let Some(h) = input
        .hourly_variance
        .iter()
        .position(|v| !(v.is_finite() && *v >= 0.0))
    {
        return Err(bad(format!("hourly_variance[{h}]"), "must be finite and >= 0"));
    }
    if input.df.is_nan() || input.df <= 2.0 {
        return Err(bad(
            "df",
            "Student-t degrees of freedom must be > 2 (infinite for normal innovations)",
        ));
    }
    if !(input.slippage_per_usd.is_finite() && input.slippage_per_usd >= 0.0) {
        return Err(bad("slippage_per_usd", "must be finite and >= 0"));
    }
    if input.paths == 0 {
        return Err(bad("paths", "must be at least 1"));
    }
    if book.positions.is_empty() {
        return Err(bad("positions", "the book holds no position"));
    }
    let lt_ok = |v: f64| v.is_finite() && v > 0.0 && v <= 1.0;
    if !lt_ok(book.default_liquidation_threshold) {
        return Err(bad("default_liquidation_threshold", "must be in (0, 1]"));
    }
    for (i, p) in book.positions.iter().enumerate() {
        if !(p.collateral.is_finite() && p.collateral >= 0.0) {
            return Err(bad(
                format!("positions[{i}].collateral"),
                "must be finite and >= 0",
            ));
        }
        if !(p.debt.is_finite() && p.debt >= 0.0) {
            return Err(bad(format!("positions[{i}].debt"), "must be finite and >= 0"));
        }
        if p.liquidation_threshold.is_some_and(|v| !lt_ok(v)) {
            return Err(bad(
                format!("positions[{i}].liquidation_threshold"),
                "must be in (0, 1]",
            ));
        }
    }
    match scenario {
        Scenario::Forecast => {}
        Scenario::VolatilityShock { k } => {
            if !(k.is_finite() && *k > 0.0 && *k <= 100.0) {
                return Err(bad("scenario.k", "volatility multiplier must be in (0, 100]"));
            }
        }
        Scenario::LiquidityDrain { k } => {
            if !(k.is_finite() && *k >= 1.0 && *k <= 100.0) {
                return Err(bad(
                    "scenario.k",
                    "liquidity drain multiplier must be in [1, 100]",
                ));
            }
        }
        Scenario::InstantDrop { pct } => {
            if !(pct.is_finite() && *pct >= 0.0 && *pct < 100.0) {
                return Err(bad("scenario.pct", "drop must be in [0, 100) percent"));
            }
        }
        Scenario::Replay { log_returns, .. } => {
            if log_returns.is_empty() {
                return Err(bad("scenario.log_returns", "a replay needs at least one hour"));
            }
            if log_returns.iter().any(|(c, l)| !(c.is_finite() && l.is_finite())) {
                return Err(bad("scenario.log_returns", "must be finite"));
            }
        }
    }
    Ok(())
}

/// One path's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PathOutcome {
    /// USD value of the collateral liquidated (at the sale price, before impact).
    pub liquidated_usd: f64,
    /// Debt not covered by the sales, USD.
    pub bad_debt_usd: f64,
    /// Positions liquidated.
    pub liquidated_positions: u32,
}

/// The simulation's input at an origin, from the risk policy's reading of the forecast there:
/// hourly variances from its curve, the slippage per USD from its expected illiquidity (0 when
/// unknown), and the liquidation delay `ceil(tau_eff)`.
#[must_use]
pub fn input_at_origin(
    price: f64,
    origin: &crate::policy::Recommendation,
    horizon: usize,
    df: f64,
    paths: usize,
    seed: u64,
) -> StressInput {
    StressInput {
        price,
        hourly_variance: origin.curve.hourly(horizon),
        df,
        slippage_per_usd: origin
            .liquidity
            .expected_illiquidity
            .map_or(0.0, |m| crate::policy::slippage(m, 1.0)),
        liquidation_delay_hours: origin.liquidity.tau_effective.ceil() as usize,
        paths,
        seed,
        bridge: Bridge::default(),
        impact: Impact::default(),
        replay_cut: ReplayCut::default(),
    }
}

/// A scenario turned into what each path needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Standard deviation of each hour's log return.
    pub sd: Vec<f64>,
    /// Variance of each hour's log return.
    pub var: Vec<f64>,
    /// Log price at the start of hour 1 relative to the origin close (the instant drop).
    pub start: f64,
    /// Student-t degrees of freedom (infinite: normal).
    pub df: f64,
    /// Price impact per USD sold.
    pub slippage_per_usd: f64,
    /// Liquidation delay, hours.
    pub delay: usize,
    /// Multiplier of the liquidation window (liquidity drain), for the recommendation.
    pub tau_scale: f64,
    /// The replayed path, when deterministic.
    pub replay: Option<Vec<(f64, f64)>>,
    /// The hour of a replay window (0-based) the replayed path starts at, when the window was
    /// longer than the horizon and cut at its deepest fall ([`ReplayCut::DeepestFall`]).
    pub replay_from: Option<usize>,
    /// Paths to simulate.
    pub paths: usize,
    /// How each hour's low is drawn.
    pub bridge: Bridge,
    /// Which sale the price impact is charged on.
    pub impact: Impact,
}

impl Plan {
    /// The plan of `scenario` on `input` (validated).
    #[must_use]
    pub fn new(input: &StressInput, scenario: &Scenario) -> Self {
        let mut plan = Self {
            sd: input.hourly_variance.iter().map(|v| v.sqrt()).collect(),
            var: input.hourly_variance.clone(),
            start: 0.0,
            df: input.df,
            slippage_per_usd: input.slippage_per_usd,
            delay: input.liquidation_delay_hours,
            tau_scale: 1.0,
            replay: None,
            replay_from: None,
            paths: input.paths,
            bridge: input.bridge,
            impact: input.impact,
        };
        match scenario {
            Scenario::Forecast => {}
            Scenario::VolatilityShock { k } => {
                plan.var.iter_mut().for_each(|v| *v *= k * k);
                plan.sd.iter_mut().for_each(|s| *s *= k);
            }
            Scenario::LiquidityDrain { k } => {
                plan.slippage_per_usd *= k;
                plan.delay = ((plan.delay as f64) * k).ceil() as usize;
                plan.tau_scale = *k;
            }
            Scenario::InstantDrop { pct } => plan.start = (1.0 - pct / 100.0).ln(),
            Scenario::Replay { log_returns, .. } => {
                let horizon = input.hourly_variance.len();
                let from = match input.replay_cut {
                    ReplayCut::DeepestFall if log_returns.len() > horizon => {
                        let from = deepest_fall(log_returns, horizon);
                        plan.replay_from = Some(from);
                        from
                    }
                    _ => 0,
                };
                let mut path: Vec<(f64, f64)> =
                    log_returns.iter().skip(from).take(horizon).copied().collect();
                // Its "variance" is the window's mean squared hourly return, for the
                // recommendation: over the hours replayed, not the flat ones after a window
                // shorter than the horizon (the CLI's `--horizon 720` took a 168-hour window's
                // rate 4.3 times too low, and recommended higher thresholds the harsher the
                // stress; the route's horizons never pass its windows' 168 hours).
                let mean = path.iter().map(|(c, _)| c * c).sum::<f64>() / path.len().max(1) as f64;
                // A replay shorter than the horizon stays flat afterwards.
                path.resize(horizon, (0.0, 0.0));
                plan.var = vec![mean; horizon];
                plan.sd = vec![mean.sqrt(); horizon];
                plan.replay = Some(path);
                plan.paths = 1;
            }
        }
        plan
    }

    /// Hours simulated.
    #[must_use]
    pub fn horizon(&self) -> usize {
        self.var.len()
    }

    /// Variance of the log return over the first `tau` hours (fractional hours linear within
    /// the hour; beyond the horizon, at the horizon's mean rate).
    #[must_use]
    pub fn variance_over(&self, tau: f64) -> f64 {
        let h = self.horizon();
        let total: f64 = self.var.iter().sum();
        if tau >= h as f64 {
            return total * tau / h as f64;
        }
        let tau = tau.max(0.0);
        let whole = tau.floor() as usize;
        self.var[..whole].iter().sum::<f64>()
            + (tau - tau.floor()) * self.var.get(whole).copied().unwrap_or(0.0)
    }

    /// Fills `lows` and `closes` with one path's hourly lows and closes (log, relative to the
    /// origin close).
    #[inline]
    fn sample_path(
        &self,
        sampler: &mut Sampler,
        t: Option<(GammaShape, f64)>,
        lows: &mut [f64],
        closes: &mut [f64],
    ) {
        let mut y = self.start;
        for (((low, close), &sd), &var) in lows
            .iter_mut()
            .zip(closes.iter_mut())
            .zip(&self.sd)
            .zip(&self.var)
        {
            let z = sampler.normal();
            // The innovation, and the variance the hour drew (`var` times the square of the
            // Student-t mixing factor, whose mean is 1).
            let (eps, drawn) = match t {
                None => (z, var),
                Some((shape, scale)) => {
                    let m = scale / sampler.gamma(shape).sqrt();
                    (z * m, var * m * m)
                }
            };
            let bridge_var = match self.bridge {
                Bridge::HourDrawn => drawn,
                Bridge::MeanVariance => var,
            };
            let b = y + sd * eps;
            let d = b - y;
            *low = 0.5 * (y + b - (d * d - 2.0 * bridge_var * sampler.uniform().ln()).sqrt());
            *close = b;
            y = b;
        }
    }

    /// The replayed path's lows.
    fn replay_lows(&self, path: &[(f64, f64)], lows: &mut [f64]) {
        let mut y = self.start;
        for (low, &(close_ret, low_ret)) in lows.iter_mut().zip(path) {
            let b = y + close_ret;
            *low = (y + low_ret).min(b);
            y = b;
        }
    }

    /// The Student-t constants: the gamma shape `df / 2` and the scale `sqrt((df - 2) / 2)`
    /// that make `Z scale / sqrt(G)` a unit-variance t; None for normal innovations.
    fn t_constants(&self) -> Option<(GammaShape, f64)> {
        self.df
            .is_finite()
            .then(|| (GammaShape::new(self.df / 2.0), ((self.df - 2.0) / 2.0).sqrt()))
    }
}

impl crate::policy::VarianceOver for Plan {
    /// No knots: the only plan the policy reads as a variance source is a replay's
    /// ([`crate::stress::ScenarioPolicy::recommend`]), at one mean rate, so `V` is proportional to
    /// the hours and `ln V` linear in `ln hours` throughout.
    fn variance_over(&self, hours: f64) -> f64 {
        Plan::variance_over(self, hours)
    }
}

/// Largest book simulated, USD: its collateral value at the origin price, and its debt, each at
/// most a thousand trillion (so no sum over the book or a path overflows). The route and the
/// `stress` command alike ([`book_usd`]).
pub const MAX_BOOK_USD: f64 = 1e15;

/// The book's collateral value at `price` and its debt, USD, each checked to be a number within
/// [`MAX_BOOK_USD`].
///
/// # Errors
/// The first that is not, in words.
pub fn book_usd(book: &Book, price: f64) -> Result<(f64, f64), String> {
    let prepared = PreparedBook::new(book, price);
    let usd = (prepared.collateral_usd(), prepared.debt_usd());
    for (what, v) in [("collateral value at the last close", usd.0), ("debt", usd.1)] {
        if v.is_nan() || v > MAX_BOOK_USD {
            return Err(format!(
                "the book's {what} is {v:e} USD; at most {MAX_BOOK_USD:e} USD is accepted"
            ));
        }
    }
    Ok(usd)
}

/// The book in the form the settlement loop wants: positions sorted by trigger level,
/// highest (first to trigger) first.
#[derive(Debug, Clone)]
pub struct PreparedBook {
    /// `ln(d / (c P0 LT))`: the position triggers when a low (log, relative) falls below it.
    level: Vec<f64>,
    /// Collateral value at the origin, USD.
    value: Vec<f64>,
    /// Debt, USD.
    debt: Vec<f64>,
}

impl PreparedBook {
    /// From a validated book and the origin price.
    #[must_use]
    pub fn new(book: &Book, price: f64) -> Self {
        let mut rows: Vec<(f64, f64, f64)> = book
            .positions
            .iter()
            .map(|p| {
                let lt = p
                    .liquidation_threshold
                    .unwrap_or(book.default_liquidation_threshold);
                let value = p.collateral * price;
                let level = if p.debt <= 0.0 {
                    f64::NEG_INFINITY
                } else {
                    // Zero collateral with debt: +inf, liquidated in the first hour.
                    (p.debt / (value * lt)).ln()
                };
                (level, value, p.debt)
            })
            .collect();
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        Self {
            level: rows.iter().map(|r| r.0).collect(),
            value: rows.iter().map(|r| r.1).collect(),
            debt: rows.iter().map(|r| r.2).collect(),
        }
    }

    /// Total collateral value at the origin, USD.
    #[must_use]
    pub fn collateral_usd(&self) -> f64 {
        self.value.iter().sum()
    }

    /// Total debt, USD.
    #[must_use]
    pub fn debt_usd(&self) -> f64 {
        self.debt.iter().sum()
    }

    /// Liquidations and bad debt along one path of hourly lows under `plan`'s liquidation
    /// delay, price impact and impact rule. `groups` is scratch space.
    #[must_use]
    pub fn settle(&self, lows: &[f64], plan: &Plan, groups: &mut Vec<(usize, usize)>) -> PathOutcome {
        let (delay, slippage_per_usd) = (plan.delay, plan.slippage_per_usd);
        let n = self.level.len();
        let horizon = lows.len();
        groups.clear();
        let mut next = 0;
        for (h, &low) in lows.iter().enumerate() {
            if next < n && self.level[next] > low {
                while next < n && self.level[next] > low {
                    next += 1;
                }
                groups.push((h, next));
                if next == n {
                    break;
                }
            }
        }
        let mut out = PathOutcome::default();
        let mut first = 0;
        for &(h, end) in groups.iter() {
            let last = (h + delay).min(horizon - 1);
            let sale = lows[h..=last].iter().copied().fold(f64::INFINITY, f64::min);
            let factor = sale.exp();
            // The hour's positions are sold together: each pays the impact of their total.
            let together = match plan.impact {
                Impact::SoldTogether => {
                    Some((slippage_per_usd * self.value[first..end].iter().sum::<f64>() * factor).min(1.0))
                }
                Impact::PerPosition => None,
            };
            for i in first..end {
                let v = self.value[i] * factor;
                let impact = together.unwrap_or_else(|| (slippage_per_usd * v).min(1.0));
                let proceeds = v * (1.0 - impact);
                out.liquidated_usd += v;
                out.bad_debt_usd += (self.debt[i] - proceeds).max(0.0);
            }
            out.liquidated_positions += u32::try_from(end - first).unwrap_or(u32::MAX);
            first = end;
        }
        out
    }
}

/// Simulates `scenario` on the CPU (rayon over chunks of paths).
///
/// # Errors
/// [`StressError`] for input [`validate`] rejects.
pub fn simulate(
    input: &StressInput,
    book: &Book,
    scenario: &Scenario,
) -> Result<Vec<PathOutcome>, StressError> {
    validate(input, book, scenario)?;
    let plan = Plan::new(input, scenario);
    let prepared = PreparedBook::new(book, input.price);
    let horizon = plan.horizon();
    let t = plan.t_constants();
    let mut out = vec![PathOutcome::default(); plan.paths];
    out.par_chunks_mut(PATHS_PER_CHUNK)
        .enumerate()
        .for_each(|(chunk, out)| {
            let mut sampler = Sampler::stream(input.seed, chunk as u64);
            let mut lows = vec![0.0; horizon];
            let mut closes = vec![0.0; horizon];
            let mut groups = Vec::with_capacity(prepared.level.len().min(horizon));
            for o in out {
                match &plan.replay {
                    Some(path) => plan.replay_lows(path, &mut lows),
                    None => plan.sample_path(&mut sampler, t, &mut lows, &mut closes),
                }
                *o = prepared.settle(&lows, &plan, &mut groups);
            }
        });
    Ok(out)
}

#[cfg(test)]
mod tests;
