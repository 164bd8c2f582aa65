//! Summaries of simulated paths (liquidations and bad debt at risk) and the engine's
//! recommended parameters under each scenario.

use serde::{Deserialize, Serialize};

use super::{Book, PathOutcome, Plan, Scenario, StressError, StressInput};
use crate::drawdown::DrawdownRule;
use crate::risk::threshold_from_drawdown;

/// Mean and tail of a per-path USD total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tail {
    /// Mean over paths.
    pub mean: f64,
    /// 95th percentile: exceeded on 5% of paths.
    pub p95: f64,
    /// 99th percentile: exceeded on 1% of paths.
    pub p99: f64,
    /// Mean of the worst 1% of paths (expected shortfall at 99%).
    pub es99: f64,
}

/// Distribution of the number of positions liquidated per path.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CountTail {
    /// Mean over paths.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// What the paths of one scenario add up to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Paths simulated.
    pub paths: usize,
    /// Share of paths with at least one liquidation.
    pub liquidation_probability: f64,
    /// USD value of collateral liquidated per path.
    pub liquidations_at_risk: Tail,
    /// Bad debt per path, USD.
    pub bad_debt_at_risk: Tail,
    /// Positions liquidated per path.
    pub liquidated_positions: CountTail,
}

/// The empirical `q`-quantile of sorted values: the smallest value with at least `q n` values
/// at or below it (the VaR convention: a reported percentile is a total some path reached;
/// calibration interpolates instead, [`crate::drawdown::sorted_quantile`]).
#[must_use]
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn tail(mut values: Vec<f64>) -> Tail {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    values.sort_unstable_by(f64::total_cmp);
    let worst = ((0.01 * values.len() as f64).ceil() as usize).clamp(1, values.len().max(1));
    let es99 = values.iter().rev().take(worst).sum::<f64>() / worst as f64;
    Tail {
        mean,
        p95: quantile_sorted(&values, 0.95),
        p99: quantile_sorted(&values, 0.99),
        es99,
    }
}

/// Summarises the paths of one scenario.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn summarize(outcomes: &[PathOutcome]) -> Summary {
    let n = outcomes.len().max(1) as f64;
    let mut sorted: Vec<f64> = outcomes
        .iter()
        .map(|o| f64::from(o.liquidated_positions))
        .collect();
    sorted.sort_unstable_by(f64::total_cmp);
    Summary {
        paths: outcomes.len(),
        liquidation_probability: outcomes.iter().filter(|o| o.liquidated_positions > 0).count() as f64 / n,
        liquidations_at_risk: tail(outcomes.iter().map(|o| o.liquidated_usd).collect()),
        bad_debt_at_risk: tail(outcomes.iter().map(|o| o.bad_debt_usd).collect()),
        liquidated_positions: CountTail {
            mean: sorted.iter().sum::<f64>() / n,
            p50: quantile_sorted(&sorted, 0.5),
            p95: quantile_sorted(&sorted, 0.95),
            p99: quantile_sorted(&sorted, 0.99),
        },
    }
}

/// What the recommendation under a scenario is asked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RecommendSettings {
    /// Quantile level of the drawdown.
    pub alpha: f64,
    /// Liquidation window, hours (already lengthened by any shortage probability).
    pub tau: f64,
    /// User reaction window, hours.
    pub tau_user: f64,
    /// Floor of the liquidation bonus.
    pub bonus: f64,
    /// Margin over the expected slippage.
    pub bonus_margin: f64,
    /// Size liquidated, USD, for the slippage.
    pub sale_size_usd: f64,
}

impl Default for RecommendSettings {
    fn default() -> Self {
        Self {
            alpha: crate::risk::DEFAULT_ALPHA,
            #[allow(clippy::cast_precision_loss)]
            tau: crate::risk::DEFAULT_TAU as f64,
            #[allow(clippy::cast_precision_loss)]
            tau_user: crate::risk::DEFAULT_TAU_USER as f64,
            bonus: crate::risk::DEFAULT_BONUS,
            bonus_margin: 0.01,
            sale_size_usd: 1e6,
        }
    }
}

/// The parameters the engine recommends, with the numbers behind them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Variance of the log return over the liquidation window.
    pub variance_tau: f64,
    /// Over the user's reaction window.
    pub variance_tau_user: f64,
    /// `D(alpha, tau)`.
    pub drawdown: f64,
    /// `D(alpha, tau_user)`.
    pub drawdown_user: f64,
    /// Expected slippage of the sale size.
    pub slippage: f64,
    /// `LB = max(bonus, slippage + margin)`.
    pub liquidation_bonus: f64,
    /// `LT = (1 - D) / (1 + LB)`.
    pub liquidation_threshold: f64,
    /// `max(0, LT - D(alpha, tau_user))`.
    pub max_ltv: f64,
    /// `D(alpha, tau)`.
    pub maintenance_margin: f64,
    /// `D(alpha, tau_user)`.
    pub initial_margin: f64,
}

/// The engine's parameters for given variances over the liquidation window `tau` and the user
/// window and a slippage: `D` by `rule` (the artifact's calibrated drawdown quantiles, or the
/// reflection principle without them; [`crate::drawdown`]), `LB = max(bonus, slippage + margin)`,
/// `LT = (1 - D) / (1 + LB)`, `max LTV = LT - D_user`.
#[must_use]
pub fn recommend(
    variance_at_tau: f64,
    variance_at_tau_user: f64,
    tau: f64,
    slippage: f64,
    settings: &RecommendSettings,
    rule: DrawdownRule<'_>,
) -> Recommendation {
    let drawdown = rule.drawdown(variance_at_tau, settings.alpha, tau);
    let drawdown_user = rule.drawdown(variance_at_tau_user, settings.alpha, settings.tau_user);
    let slippage = if slippage.is_finite() {
        slippage.max(0.0)
    } else {
        0.0
    };
    let liquidation_bonus = settings
        .bonus
        .max(0.0)
        .max(slippage + settings.bonus_margin.max(0.0));
    let liquidation_threshold = threshold_from_drawdown(drawdown, liquidation_bonus);
    Recommendation {
        variance_tau: variance_at_tau,
        variance_tau_user: variance_at_tau_user,
        drawdown,
        drawdown_user,
        slippage,
        liquidation_bonus,
        liquidation_threshold,
        max_ltv: (liquidation_threshold - drawdown_user).max(0.0),
        maintenance_margin: drawdown,
        initial_margin: drawdown_user,
    }
}

/// One scenario's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// Label, e.g. `volatility x2`.
    pub scenario: String,
    /// Liquidation delay used, hours.
    pub liquidation_delay_hours: usize,
    /// Price impact per USD sold used.
    pub slippage_per_usd: f64,
    /// Variance of the log return over the whole horizon.
    pub horizon_variance: f64,
    /// Liquidations, bad debt and counts over paths.
    pub summary: Summary,
    /// What the engine recommends under the scenario.
    pub recommendation: Recommendation,
    /// Wall time of the simulation, seconds.
    pub seconds: f64,
}

/// How to simulate one scenario: [`simulate`] or [`gpu::simulate`] on a device.
pub type Simulator<'a> = dyn Fn(&StressInput, &Book, &Scenario) -> Result<Vec<PathOutcome>, StressError> + 'a;

/// Runs every scenario and summarises it, with the engine's recommendation under it.
///
/// # Errors
/// The first scenario the simulator rejects.
pub fn run(
    input: &StressInput,
    book: &Book,
    scenarios: &[Scenario],
    settings: &RecommendSettings,
    rule: DrawdownRule<'_>,
    simulator: &Simulator<'_>,
) -> Result<Vec<ScenarioReport>, StressError> {
    scenarios
        .iter()
        .map(|scenario| {
            let started = std::time::Instant::now();
            let outcomes = simulator(input, book, scenario)?;
            let seconds = started.elapsed().as_secs_f64();
            let plan = Plan::new(input, scenario);
            let tau = settings.tau * plan.tau_scale;
            let recommendation = recommend(
                plan.variance_over(tau),
                plan.variance_over(settings.tau_user),
                tau,
                plan.slippage_per_usd * settings.sale_size_usd,
                settings,
                rule,
            );
            Ok(ScenarioReport {
                scenario: scenario.label(),
                liquidation_delay_hours: plan.delay,
                slippage_per_usd: plan.slippage_per_usd,
                horizon_variance: plan.var.iter().sum(),
                summary: summarize(&outcomes),
                recommendation,
                seconds,
            })
        })
        .collect()
}
