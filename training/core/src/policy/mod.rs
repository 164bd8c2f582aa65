//! The one risk policy: from variance and liquidity forecasts to SPEC's protocol parameters
//! (liquidation threshold, max LTV, liquidation bonus, margins), with the numbers behind them.
//! `/v1/risk/parameters`, `/v1/risk/stress`, the `stress` command and the backtest all call it;
//! callers differ in wiring, never in arithmetic.
//!
//! - [`RiskSettings`]: what a caller may ask (alpha, tau, tau_user, bonus, margin, sale size,
//!   step), checked once against the same ranges everywhere ([`RiskSettings::resolve`]).
//! - [`recommend`]: the parameters for a forecast at an origin, with an optional previous value.
//! - [`parameters`]: the same rules for any variance source ([`VarianceOver`]), e.g. a stress
//!   scenario's path.
//! - [`threshold`]: `LT` from `D` and `LB`, also the backtest's.
//!
//! Rules (documented in the README, "Server"):
//! - **Variance over tau hours** from the per-horizon forecasts: `V(tau) = V(h0) tau / h0` below
//!   the shortest horizon, log-linear in `(ln H, ln V)` between horizons, `V(hn) tau / hn` beyond
//!   the longest.
//! - **Drawdown** `D(alpha, tau) = max_{t <= tau} 1 - exp(-u_alpha(t) sqrt(V(t))^g)`, `u_alpha(t)`
//!   and `g` the artifact's calibrated quantile of the scale-free fall and its exponent
//!   ([`crate::drawdown`]); an artifact without a calibration uses the reflection
//!   principle, `u = z_{(1+alpha)/2}`, `g = 1`. The
//!   "plain normal" comparison uses `z_alpha` (the close at `t + tau`, SPEC's GARCH-normal policy).
//!   The largest over shorter windows ([`drawdown_within`]) because the fall within `tau` hours
//!   cannot be smaller than within fewer; decisions recorded before stop 61 took `t = tau` alone.
//! - **Effective liquidation window** `tau_eff = tau (1 + p)`, `p` the shortage probability at the
//!   shortest served horizon `>= tau` (the longest when none is): a shortage slows liquidation.
//!   At least a shorter window's ([`shorter_effective_tau`]), so it never shrinks as tau grows
//!   (decisions recorded before stop 61 took `tau (1 + p)` alone).
//! - **Bonus** `LB = max(bonus, slippage + bonus_margin)`; without a slippage estimate, `bonus`;
//!   at most [`MAX_BONUS`] (a bonus of the whole debt; the risk oracle's basis points end there),
//!   so SPEC's `LB >= slippage + margin` holds wherever that sum is at most 1.
//! - **Unliquidatable size**: an expected slippage `>= 1` (or not finite) means selling the size
//!   would lose the whole price, so no loan is safe: `LB` is [`MAX_BONUS`], `LT = max LTV = 0`
//!   whatever the previous values, and [`Policy::liquidation_blocked`] says so. Worse liquidity
//!   never lowers the bonus.
//! - **Threshold** `LT = min((1 - D) / (1 + LB), 1 / (1 + LB))` in `[0, 1]`, **max LTV**
//!   `max(0, LT - D(alpha, tau_user))`, **margins** maintenance `D(alpha, tau_eff)` and initial
//!   `max(D(alpha, tau_user), D(alpha, tau_eff))`, in `[0, 1]`: SPEC's initial margin is
//!   `D(alpha, tau_user)`, which a liquidation window longer than the user's (a shortage
//!   lengthens it) put below the maintenance margin, so that a position opened at its initial
//!   margin could be liquidated at once (decisions recorded before stop 62 served it so).
//! - **Bounded change**: with a previous value, each of LT and max LTV moves at most `max_step`
//!   (relative) from it; the invariants `LT (1 + LB) <= 1` and
//!   `0 <= max LTV <= max(0, LT - D(alpha, tau_user))` are then imposed again with the bounded
//!   LT, and win over the step bound (so max LTV may fall faster than the step, never rise
//!   faster; [`StepRule`]).

use crate::curve::VarianceCurve;
use crate::drawdown::{DrawdownRule, clip01};

mod settings;
mod window;

pub use settings::{
    ALPHA_RANGE, AskedSettings, BONUS_RANGE, DEFAULT_ALPHA, DEFAULT_BONUS, DEFAULT_BONUS_MARGIN,
    DEFAULT_MAX_STEP, DEFAULT_SALE_SIZE_USD, DEFAULT_TAU, DEFAULT_TAU_USER, FLAG_NAMES, JSON_NAMES, Range,
    RiskSettings, SALE_SIZE_RANGE, SettingNames, SettingsError, TAU_RANGE, UNIT_RANGE, said,
};
pub use window::{DrawdownWindow, WindowDrawdown, drawdown_within};

impl RiskSettings {
    /// The policy's input for a liquidation window `tau` (already lengthened) and a slippage,
    /// `D` over every window up to it ([`DrawdownWindow::UpToTau`]).
    #[must_use]
    pub fn input(&self, tau: f64, slippage: Option<f64>) -> PolicyInput {
        PolicyInput {
            alpha: self.alpha,
            tau,
            tau_user: self.tau_user,
            bonus: self.bonus,
            bonus_margin: self.bonus_margin,
            slippage,
            window: DrawdownWindow::default(),
        }
    }
}

/// Anything that gives the variance of the log return over a number of hours: the forecast
/// curve, or a stress scenario's path.
pub trait VarianceOver {
    /// The variance over `hours` hours (NaN when unknown).
    fn variance_over(&self, hours: f64) -> f64;

    /// Hours between which `ln V` is linear in `ln hours` (a curve's horizons), increasing;
    /// below the first and beyond the last, `V` grows with the hours. [`drawdown_within`] looks
    /// for the largest drawdown there. None by default.
    fn knots(&self) -> Vec<f64> {
        Vec::new()
    }
}

impl VarianceOver for VarianceCurve {
    fn variance_over(&self, hours: f64) -> f64 {
        self.at(hours)
    }

    fn knots(&self) -> Vec<f64> {
        self.usable().map(|(h, _)| h).collect()
    }
}

/// A variance source scaled by a constant (a volatility shock of `k` scales it by `k^2`).
#[derive(Debug, Clone, Copy)]
pub struct Scaled<'a, V: ?Sized> {
    /// The source.
    pub source: &'a V,
    /// The factor.
    pub factor: f64,
}

impl<V: VarianceOver + ?Sized> VarianceOver for Scaled<'_, V> {
    fn variance_over(&self, hours: f64) -> f64 {
        self.source.variance_over(hours) * self.factor
    }

    fn knots(&self) -> Vec<f64> {
        self.source.knots()
    }
}

/// `tau_eff = tau (1 + p)`, `p` clipped into `[0, 1]` (NaN counts as 0).
#[must_use]
pub fn effective_tau(tau: f64, shortage_probability: f64) -> f64 {
    let p = if shortage_probability.is_nan() {
        0.0
    } else {
        shortage_probability.clamp(0.0, 1.0)
    };
    tau * (1.0 + p)
}

/// The served horizon whose liquidity forecast applies to a liquidation window of `tau` hours:
/// the shortest `>= tau`, or the longest.
#[must_use]
pub fn liquidity_horizon(horizons: &[usize], tau: f64) -> Option<usize> {
    horizons
        .iter()
        .copied()
        .find(|&h| h as f64 >= tau)
        .or_else(|| horizons.last().copied())
}

/// The liquidity side of a recommendation for a liquidation window of `tau` hours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Liquidity {
    /// The served horizon whose liquidity forecast applies ([`liquidity_horizon`]).
    pub horizon: usize,
    /// The model's shortage probability there (NaN when it has none).
    pub shortage_probability: f64,
    /// `tau (1 + p)` ([`effective_tau`]).
    pub tau_effective: f64,
    /// The current `M_H` at that horizon, when finite.
    pub current_illiquidity: Option<f64>,
    /// [`expected_illiquidity`] of it.
    pub expected_illiquidity: Option<f64>,
}

/// The longest lengthened window of a liquidation window shorter than `tau`: `h (1 + p_h)` for
/// each served horizon `h < tau` (within a horizon's span `t (1 + p)` grows with `t`, so its
/// largest is at the horizon); 0 when none is shorter. Without it a shortage expected at 4 h but
/// not at 24 h gave tau 5 h a shorter `tau_eff` (5.5 h) than tau 4 h (6 h) at `p_4 = 0.5`,
/// `p_24 = 0.1`.
#[must_use]
pub fn shorter_effective_tau(horizons: &[usize], shortage: &[f64], tau: f64) -> f64 {
    horizons
        .iter()
        .zip(shortage)
        .filter(|(h, _)| (**h as f64) < tau)
        .map(|(&h, &p)| effective_tau(h as f64, p))
        .fold(0.0, f64::max)
}

/// [`Liquidity`] from per-horizon shortage probabilities and current illiquidities, both in the
/// order of `horizons`.
#[must_use]
pub fn liquidity(horizons: &[usize], shortage: &[f64], illiquidity: &[f64], tau: f64) -> Liquidity {
    let mut sorted = horizons.to_vec();
    sorted.sort_unstable();
    let horizon = liquidity_horizon(&sorted, tau).unwrap_or(DEFAULT_TAU);
    let j = horizons.iter().position(|&h| h == horizon).unwrap_or(0);
    let p = shortage.get(j).copied().unwrap_or(f64::NAN);
    let current = illiquidity.get(j).copied().filter(|m| m.is_finite());
    Liquidity {
        horizon,
        shortage_probability: p,
        tau_effective: effective_tau(tau, p),
        current_illiquidity: current,
        expected_illiquidity: current.map(|m| expected_illiquidity(m, if p.is_finite() { p } else { 0.0 })),
    }
}

/// Expected illiquidity: the current `M_H` scaled by `1 + p` (a shortage doubles it).
#[must_use]
pub fn expected_illiquidity(current: f64, shortage_probability: f64) -> f64 {
    current * (1.0 + shortage_probability.clamp(0.0, 1.0))
}

/// Expected slippage (fraction of price) of selling `sale_size_usd` at Amihud illiquidity
/// `illiquidity` (|r| per $1M traded).
#[must_use]
pub fn slippage(illiquidity: f64, sale_size_usd: f64) -> f64 {
    illiquidity * sale_size_usd / 1e6
}

/// The liquidation bonus reported when the sale cannot be liquidated (slippage `>= 1`).
pub const MAX_BONUS: f64 = 1.0;

/// Whether an expected slippage means the size cannot be liquidated: `>= 1` or not finite.
#[must_use]
pub fn unliquidatable(slippage: Option<f64>) -> bool {
    slippage.is_some_and(|s| !s.is_finite() || s >= 1.0)
}

/// What the policy is asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyInput {
    /// Quantile level of the drawdown, in (0, 1).
    pub alpha: f64,
    /// Liquidation window (already lengthened by the shortage probability), hours.
    pub tau: f64,
    /// User reaction window, hours.
    pub tau_user: f64,
    /// Floor of the liquidation bonus.
    pub bonus: f64,
    /// Margin over the expected slippage.
    pub bonus_margin: f64,
    /// Expected slippage of the liquidated size, when known.
    pub slippage: Option<f64>,
    /// Which windows `D(alpha, tau)` and `D(alpha, tau_user)` are taken over.
    pub window: DrawdownWindow,
}

/// How max LTV is bounded once the step bound has moved LT and max LTV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StepRule {
    /// [`Self::KeepsUserBuffer`], and a previous value of 0 bounds nothing: there is no relative
    /// step from 0, and under the older rules a threshold once 0 (lending closed by a blocked
    /// answer, sent back as `previous`) could never leave 0 again, however liquidity recovered.
    #[default]
    UnboundedFromZero,
    /// `max LTV <= LT - D(alpha, tau_user)` with the bounded LT, so SPEC's user buffer holds
    /// after the step too (the step may lower max LTV faster than `max_step`, never raise it).
    /// Until stop 59 a previous value of 0 held its parameter at 0. Kept to replay decisions
    /// recorded then.
    KeepsUserBuffer,
    /// Before 2026-12-06: `max LTV <= LT` only, so a max LTV held up by the step could sit
    /// closer to LT than `D(alpha, tau_user)`. Kept to replay decisions recorded then.
    LtvBelowLtOnly,
}

impl StepRule {
    /// The name decision records carry (`derivation.step_rule`); `None` for the rule of
    /// records made before the field existed.
    #[must_use]
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::UnboundedFromZero => Some("keeps_user_buffer_unbounded_from_zero"),
            Self::KeepsUserBuffer => Some("keeps_user_buffer"),
            Self::LtvBelowLtOnly => None,
        }
    }

    /// The rule a record names ([`Self::name`]); None for a name this build does not know.
    #[must_use]
    pub fn named(name: &str) -> Option<Self> {
        [Self::UnboundedFromZero, Self::KeepsUserBuffer]
            .into_iter()
            .find(|r| r.name() == Some(name))
    }
}

/// Previous values and how far they may move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// Previous liquidation threshold.
    pub liquidation_threshold: Option<f64>,
    /// Previous max LTV.
    pub max_ltv: Option<f64>,
    /// Maximum relative step, e.g. 0.05 for 5%.
    pub max_step: f64,
    /// How max LTV is bounded after the step.
    pub rule: StepRule,
}

/// The parameters and the numbers behind them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Variance of the log return over the liquidation window.
    pub variance_tau: f64,
    /// Over the user's reaction window.
    pub variance_tau_user: f64,
    /// D(alpha, tau).
    pub drawdown: f64,
    /// D(alpha, tau_user).
    pub drawdown_user: f64,
    /// The window `D(alpha, tau)` was taken at: `tau`, or a shorter one where it is larger
    /// ([`drawdown_within`]).
    pub drawdown_hours: f64,
    /// The same for `D(alpha, tau_user)`.
    pub drawdown_user_hours: f64,
    /// The variance over `drawdown_hours` (`variance_tau` when that is `tau`).
    pub drawdown_variance: f64,
    /// The variance over `drawdown_user_hours`.
    pub drawdown_user_variance: f64,
    /// Liquidation bonus.
    pub liquidation_bonus: f64,
    /// Liquidation threshold.
    pub liquidation_threshold: f64,
    /// Max LTV.
    pub max_ltv: f64,
    /// Maintenance margin: `D(alpha, tau)`.
    pub maintenance_margin: f64,
    /// Initial margin: `D(alpha, tau_user)`, or the maintenance margin where that is larger (a
    /// liquidation window longer than the user's, as a shortage makes it): a position opened at
    /// its initial margin must not already be below maintenance.
    pub initial_margin: f64,
    /// The window the initial margin was taken at: `drawdown_user_hours`, or `drawdown_hours`
    /// where the maintenance margin is the larger.
    pub initial_margin_hours: f64,
    /// LT before the bounded change.
    pub unbounded_liquidation_threshold: f64,
    /// Max LTV before the bounded change.
    pub unbounded_max_ltv: f64,
    /// Whether the step bound changed LT or max LTV.
    pub step_limited: bool,
    /// Whether max LTV fell further below its previous value than the step allows, because
    /// the user's buffer under the bounded LT wins over the step ([`StepRule::KeepsUserBuffer`]).
    pub buffer_over_step: bool,
    /// The expected slippage is `>= 1` (or not finite): LT and max LTV are 0 ([`unliquidatable`]).
    pub liquidation_blocked: bool,
    /// Both drawdowns came from finite variances (and a finite multiplier). When false the
    /// drawdowns are taken as 1 (LT = max LTV = 0 before any step bound: with previous values
    /// and a step, the step still holds them near those), and a caller must not serve the
    /// answer as a forecast: the inputs could not support one.
    pub finite: bool,
}

/// The bonus: `max(bonus, slippage + margin)`, never negative and at most [`MAX_BONUS`];
/// [`MAX_BONUS`] when the size is [`unliquidatable`] (never the floor: worse liquidity must not
/// lower the bonus, so a slippage just under 1 with a margin is capped at the same value).
#[must_use]
pub fn liquidation_bonus(input: &PolicyInput) -> f64 {
    let floor = input.bonus.max(0.0);
    match input.slippage {
        _ if unliquidatable(input.slippage) => floor.max(MAX_BONUS),
        Some(s) if s.is_finite() => floor
            .max(s.max(0.0) + input.bonus_margin.max(0.0))
            .min(floor.max(MAX_BONUS)),
        _ => floor,
    }
}

/// `LT = min((1 - D) / (1 + LB), 1 / (1 + LB))` in `[0, 1]`.
#[must_use]
pub fn threshold(drawdown: f64, bonus: f64) -> f64 {
    let cap = 1.0 / (1.0 + bonus);
    clip01((1.0 - clip01(drawdown)) / (1.0 + bonus)).min(cap)
}

fn step(value: f64, previous: Option<f64>, max_step: f64, rule: StepRule) -> f64 {
    match previous {
        Some(p) if p == 0.0 && rule == StepRule::UnboundedFromZero => value,
        // A previous value outside [0, 1] bounds nothing (the routes refuse one; a negative
        // one made the clamp's bounds cross, a panic).
        Some(p) if (0.0..=1.0).contains(&p) && max_step.is_finite() => {
            let s = max_step.max(0.0);
            value.clamp(p * (1.0 - s), p * (1.0 + s))
        }
        _ => value,
    }
}

/// The parameters for a variance source and a rule turning the `tau`-hour variance into
/// `D(alpha, tau)` (calibrated, reflection or plain normal), by the rules of the module docs.
#[must_use]
pub fn parameters<V: VarianceOver + ?Sized>(
    variance: &V,
    input: &PolicyInput,
    bound: Option<&Bound>,
    rule: DrawdownRule<'_>,
) -> Policy {
    let variance_tau = variance.variance_over(input.tau);
    let variance_tau_user = variance.variance_over(input.tau_user);
    let raw = drawdown_within(variance, rule, input.alpha, input.tau, input.window);
    let raw_user = drawdown_within(variance, rule, input.alpha, input.tau_user, input.window);
    let finite = raw.drawdown.is_finite() && raw_user.drawdown.is_finite();
    let (drawdown, drawdown_user) = (clip01(raw.drawdown), clip01(raw_user.drawdown));
    let lb = liquidation_bonus(input);
    let blocked = unliquidatable(input.slippage);
    let lt = if blocked { 0.0 } else { threshold(drawdown, lb) };
    let max_ltv = (lt - drawdown_user).max(0.0);
    let (mut bounded_lt, mut bounded_ltv) = (lt, max_ltv);
    if let Some(b) = bound.filter(|_| !blocked) {
        bounded_lt = step(lt, b.liquidation_threshold, b.max_step, b.rule);
        bounded_ltv = step(max_ltv, b.max_ltv, b.max_step, b.rule);
    }
    // The invariants win over the step bound.
    let cap = if blocked { 0.0 } else { 1.0 / (1.0 + lb) };
    bounded_lt = clip01(bounded_lt).min(cap);
    bounded_ltv = clip01(bounded_ltv).min(bounded_lt);
    let mut buffer_over_step = false;
    if let Some(b) = bound.filter(|b| b.rule != StepRule::LtvBelowLtOnly) {
        let stepped = bounded_ltv;
        bounded_ltv = bounded_ltv.min((bounded_lt - drawdown_user).max(0.0));
        // Lowered by the buffer below the step's floor (the step allowed no lower than
        // `previous (1 - max_step)`).
        buffer_over_step = bounded_ltv < stepped
            && b.max_ltv
                .is_some_and(|p| p.is_finite() && bounded_ltv < p * (1.0 - b.max_step.max(0.0)));
    }
    Policy {
        variance_tau,
        variance_tau_user,
        drawdown,
        drawdown_user,
        drawdown_hours: raw.hours,
        drawdown_user_hours: raw_user.hours,
        drawdown_variance: raw.variance,
        drawdown_user_variance: raw_user.variance,
        liquidation_bonus: lb,
        liquidation_threshold: bounded_lt,
        max_ltv: bounded_ltv,
        maintenance_margin: drawdown,
        initial_margin: drawdown_user.max(drawdown),
        initial_margin_hours: if drawdown > drawdown_user {
            raw.hours
        } else {
            raw_user.hours
        },
        unbounded_liquidation_threshold: lt,
        unbounded_max_ltv: max_ltv,
        step_limited: bounded_lt != lt || bounded_ltv != max_ltv,
        buffer_over_step,
        liquidation_blocked: blocked,
        finite,
    }
}

/// What the model forecasts at an origin, per served horizon (all in the order of `horizons`).
#[derive(Debug, Clone, Copy)]
pub struct Forecasts<'a> {
    /// Served horizons, hours.
    pub horizons: &'a [usize],
    /// Variance of the summed log returns per horizon.
    pub variance: &'a [f64],
    /// Shortage probability per horizon.
    pub shortage_probability: &'a [f64],
    /// Current mean illiquidity `M_H` per horizon (NaN where unknown).
    pub illiquidity: &'a [f64],
}

/// Previous values a caller holds, for a bounded change.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Previous {
    /// Previous liquidation threshold.
    pub liquidation_threshold: Option<f64>,
    /// Previous max LTV.
    pub max_ltv: Option<f64>,
    /// How max LTV is bounded after the step.
    pub rule: StepRule,
}

/// The policy's answer for a forecast: the parameters and how they were derived.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The liquidity side: horizon, shortage probability, `tau_eff`, illiquidity.
    pub liquidity: Liquidity,
    /// Expected slippage of selling the sale size, when the illiquidity is known.
    pub slippage: Option<f64>,
    /// The forecast as a variance curve.
    pub curve: VarianceCurve,
    /// The parameters.
    pub policy: Policy,
}

/// **The risk policy**: the parameters for `forecasts` under `settings`, moving at most
/// `settings.max_step` from `previous` when given, with `D` by `rule` over the windows `window`
/// says.
#[must_use]
pub fn recommend(
    forecasts: &Forecasts<'_>,
    settings: &RiskSettings,
    previous: Option<&Previous>,
    rule: DrawdownRule<'_>,
    window: DrawdownWindow,
) -> Recommendation {
    let mut liquidity = liquidity(
        forecasts.horizons,
        forecasts.shortage_probability,
        forecasts.illiquidity,
        settings.tau,
    );
    if window == DrawdownWindow::UpToTau {
        liquidity.tau_effective = liquidity.tau_effective.max(shorter_effective_tau(
            forecasts.horizons,
            forecasts.shortage_probability,
            settings.tau,
        ));
    }
    let slippage = liquidity
        .expected_illiquidity
        .map(|m| slippage(m, settings.sale_size_usd));
    let curve = VarianceCurve::new(forecasts.horizons, forecasts.variance);
    let bound = previous.map(|p| Bound {
        liquidation_threshold: p.liquidation_threshold,
        max_ltv: p.max_ltv,
        max_step: settings.max_step,
        rule: p.rule,
    });
    let input = PolicyInput {
        window,
        ..settings.input(liquidity.tau_effective, slippage)
    };
    let policy = parameters(&curve, &input, bound.as_ref(), rule);
    Recommendation {
        liquidity,
        slippage,
        curve,
        policy,
    }
}

#[cfg(test)]
mod tests;
