//! Summaries of simulated paths (liquidations and bad debt at risk) and the risk policy's
//! parameters under each scenario ([`ScenarioPolicy`]).

use serde::{Deserialize, Serialize};

use super::{Book, PathOutcome, Plan, Scenario, StressError, StressInput};
use crate::curve::VarianceCurve;
use crate::drawdown::DrawdownRule;
use crate::policy::{self, Liquidity, RiskSettings, Scaled, VarianceOver};

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
/// calibration interpolates instead, [`crate::drawdown::interpolated_quantile`]).
#[must_use]
pub fn rank_quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

fn tail(mut values: Vec<f64>) -> Tail {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    values.sort_unstable_by(f64::total_cmp);
    let worst = ((0.01 * values.len() as f64).ceil() as usize).clamp(1, values.len().max(1));
    let es99 = values.iter().rev().take(worst).sum::<f64>() / worst as f64;
    Tail {
        mean,
        p95: rank_quantile(&values, 0.95),
        p99: rank_quantile(&values, 0.99),
        es99,
    }
}

/// Summarises the paths of one scenario.
#[must_use]
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
            p50: rank_quantile(&sorted, 0.5),
            p95: rank_quantile(&sorted, 0.95),
            p99: rank_quantile(&sorted, 0.99),
        },
    }
}

/// The parameters the risk policy recommends under a scenario, with the numbers behind them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRecommendation {
    /// Variance of the log return over the liquidation window.
    pub variance_tau: f64,
    /// Over the user's reaction window.
    pub variance_tau_user: f64,
    /// `D(alpha, tau)`.
    pub drawdown: f64,
    /// `D(alpha, tau_user)`.
    pub drawdown_user: f64,
    /// The window `drawdown` was taken at, hours: the liquidation window, or a shorter one where
    /// the drawdown is larger ([`policy::drawdown_within`]). None under
    /// [`policy::DrawdownWindow::AtTau`] (answers recorded before stop 61).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_hours: Option<f64>,
    /// The same for `drawdown_user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_user_hours: Option<f64>,
    /// The variance over `drawdown_hours` (None as `drawdown_hours` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_variance: Option<f64>,
    /// The variance over `drawdown_user_hours` (over `tau_user` under
    /// [`policy::DrawdownWindow::AtTau`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown_user_variance: Option<f64>,
    /// The window `initial_margin` was taken at ([`policy::Policy::initial_margin_hours`]);
    /// always given here, the server leaving it out of answers made under the rule recorded
    /// before stop 62.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_margin_hours: Option<f64>,
    /// Expected slippage of the sale size, when the illiquidity is known.
    pub slippage: Option<f64>,
    /// `LB = max(bonus, slippage + margin)`.
    pub liquidation_bonus: f64,
    /// `LT = (1 - D) / (1 + LB)`.
    pub liquidation_threshold: f64,
    /// `max(0, LT - D(alpha, tau_user))`.
    pub max_ltv: f64,
    /// `D(alpha, tau)`.
    pub maintenance_margin: f64,
    /// `max(D(alpha, tau_user), D(alpha, tau))` ([`policy::Policy::initial_margin`]).
    pub initial_margin: f64,
    /// The sale cannot be liquidated (slippage `>= 1`): LT and max LTV are 0.
    pub liquidation_blocked: bool,
    /// Every intermediate number was finite ([`policy::Policy::finite`]).
    pub finite: bool,
}

/// The risk policy ([`crate::policy`]) applied under each scenario: the forecast and the
/// liquidity it starts from, the settings and the drawdown rule.
#[derive(Debug, Clone, Copy)]
pub struct ScenarioPolicy<'a> {
    /// The forecast variance curve at the origin.
    pub forecast: &'a VarianceCurve,
    /// The liquidity side at the origin ([`policy::liquidity`] at `settings.tau`).
    pub liquidity: &'a Liquidity,
    /// Validated settings.
    pub settings: &'a RiskSettings,
    /// How variance becomes `D(alpha, tau)`.
    pub rule: DrawdownRule<'a>,
    /// Which windows `D` is taken over.
    pub window: policy::DrawdownWindow,
}

impl ScenarioPolicy<'_> {
    /// The parameters under `scenario`: the policy's rules on the scenario's variance (the
    /// forecast, `k^2` times it for a volatility shock, the window's mean rate for a replay), its
    /// liquidation window and its slippage (both `k` times the forecast's for a liquidity
    /// drain). Under [`Scenario::Forecast`] this is exactly [`policy::recommend`] at the origin.
    #[must_use]
    pub fn recommend(&self, scenario: &Scenario, plan: &Plan) -> ScenarioRecommendation {
        let shocked;
        let (variance, drain): (&dyn VarianceOver, f64) = match scenario {
            Scenario::VolatilityShock { k } => {
                shocked = Scaled {
                    source: self.forecast,
                    factor: k * k,
                };
                (&shocked, 1.0)
            }
            Scenario::LiquidityDrain { k } => (self.forecast, *k),
            Scenario::Replay { .. } => (plan, 1.0),
            Scenario::Forecast | Scenario::InstantDrop { .. } => (self.forecast, 1.0),
        };
        let slippage = self
            .liquidity
            .expected_illiquidity
            .map(|m| policy::slippage(m, self.settings.sale_size_usd) * drain);
        let tau = self.liquidity.tau_effective * drain;
        let input = policy::PolicyInput {
            window: self.window,
            ..self.settings.input(tau, slippage)
        };
        let p = policy::parameters(variance, &input, None, self.rule);
        let said = |x: f64| (self.window == policy::DrawdownWindow::UpToTau).then_some(x);
        ScenarioRecommendation {
            variance_tau: p.variance_tau,
            variance_tau_user: p.variance_tau_user,
            drawdown: p.drawdown,
            drawdown_user: p.drawdown_user,
            drawdown_hours: said(p.drawdown_hours),
            drawdown_user_hours: said(p.drawdown_user_hours),
            drawdown_variance: said(p.drawdown_variance),
            drawdown_user_variance: Some(p.drawdown_user_variance),
            initial_margin_hours: Some(p.initial_margin_hours),
            slippage,
            liquidation_bonus: p.liquidation_bonus,
            liquidation_threshold: p.liquidation_threshold,
            max_ltv: p.max_ltv,
            maintenance_margin: p.maintenance_margin,
            initial_margin: p.initial_margin,
            liquidation_blocked: p.liquidation_blocked,
            finite: p.finite,
        }
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
    /// For a replay window longer than the horizon, the hour of the window (0-based) its
    /// applied hours start at ([`super::ReplayCut::DeepestFall`]).
    pub replay_from_hour: Option<usize>,
    /// Liquidations, bad debt and counts over paths.
    pub summary: Summary,
    /// What the risk policy recommends under the scenario.
    pub recommendation: ScenarioRecommendation,
    /// Wall time of the simulation, seconds.
    pub seconds: f64,
}

/// How to simulate one scenario: [`simulate`](super::simulate) or the training crate's
/// `stress_gpu::simulate` on a device.
pub type Simulator<'a> = dyn Fn(&StressInput, &Book, &Scenario) -> Result<Vec<PathOutcome>, StressError> + 'a;

/// Runs every scenario and summarises it, with the risk policy's recommendation under it.
///
/// # Errors
/// The first scenario the simulator rejects.
pub fn run(
    input: &StressInput,
    book: &Book,
    scenarios: &[Scenario],
    policy: &ScenarioPolicy<'_>,
    simulator: &Simulator<'_>,
) -> Result<Vec<ScenarioReport>, StressError> {
    scenarios
        .iter()
        .map(|scenario| {
            let started = std::time::Instant::now();
            let outcomes = simulator(input, book, scenario)?;
            let seconds = started.elapsed().as_secs_f64();
            let plan = Plan::new(input, scenario);
            Ok(ScenarioReport {
                scenario: scenario.label(),
                liquidation_delay_hours: plan.delay,
                slippage_per_usd: plan.slippage_per_usd,
                horizon_variance: plan.var.iter().sum(),
                replay_from_hour: plan.replay_from,
                summary: summarize(&outcomes),
                recommendation: policy.recommend(scenario, &plan),
                seconds,
            })
        })
        .collect()
}
