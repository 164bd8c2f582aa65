//! The evaluation report: what `evaluate` prints, and the JSON other tools read.
//!
//! Paths other tools rely on: `horizons.<H>.n_points`, `horizons.<H>.qlike.<name>`,
//! `horizons.<H>.dm`, `horizons.<H>.shortage.base_rate`, `horizons.<H>.shortage.<metric>.<name>`,
//! `risk.policies.<name>.{breach_rate, mean_lt, n}`.

use std::collections::BTreeMap;

use serde::Serialize;

use volcast_core::baselines::garch::AssetGarch;
use volcast_core::baselines::har::Har;
use volcast_core::baselines::shortage::ShortageLogistic;

/// Version of this report's layout; bumped when a path changes meaning.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationReport {
    /// Layout version.
    pub schema_version: u32,
    /// What was asked.
    pub config: ConfigReport,
    /// What data was used.
    pub data: DataReport,
    /// Fitted baseline parameters.
    pub fits: FitsReport,
    /// Volatility and shortage scores per horizon.
    pub horizons: BTreeMap<usize, HorizonReport>,
    /// Liquidation-threshold backtest.
    pub risk: RiskReport,
    /// Per horizon, the model's blend with HAR as served against fixed weights in hindsight
    /// over the period (a diagnostic; empty unless the model is operated with the blend and the
    /// command computes it: `evaluate` and `walkforward` do).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blend_hindsight: Vec<crate::rolling::BlendHindsight>,
    /// Wall time of each stage, seconds.
    pub timings: BTreeMap<String, f64>,
}

/// The evaluation's settings, times in RFC 3339.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// Open time of the last candle fitting may use.
    pub fit_until: String,
    /// First origin scored.
    pub eval_from: String,
    /// Last origin scored.
    pub eval_until: String,
    /// Horizons in hours.
    pub horizons: Vec<usize>,
    /// Risk quantile level.
    pub alpha: f64,
    /// Liquidation window, hours.
    pub tau: usize,
    /// Liquidation bonus.
    pub bonus: f64,
    /// Model artifact scored, if any.
    pub model: Option<String>,
    /// HAR operated's daily window, days (none: HAR is not operated).
    pub operated_days: Option<usize>,
    /// Whether the baselines' drawdowns were calibrated with a fitted exponent.
    pub fit_exponent: bool,
    /// How the model was operated, as the command that scored it says (absent without a model):
    /// two reports scored under other options say so, not only by their figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationReport>,
}

/// How the scored model was operated.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OperationReport {
    /// The daily job's trailing window, days; none: the corrections stored at the fit end, fixed.
    pub daily_window_days: Option<usize>,
    /// The daily job's adaptive settings in force (the artifact's, or a command's overrides).
    pub adaptive: Option<volcast_model::artifact::Adaptive>,
    /// Horizons whose network variance is carried from a shorter one's.
    pub term_structure: BTreeMap<usize, usize>,
    /// Scored without the market factor.
    pub without_market: bool,
    /// Early-stopped folds whose forecasts stand in before the fit end (`walkforward
    /// --before-fit-end-from`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_fit_end_from: Option<String>,
    /// The artifact's feature version (served with its own version's features).
    pub features_version: u32,
}

/// The panel.
#[derive(Debug, Clone, Serialize)]
pub struct DataReport {
    /// Number of assets.
    pub assets: usize,
    /// Number of candles.
    pub candles: usize,
    /// Open time of the earliest candle.
    pub first_candle: Option<String>,
    /// Open time of the latest candle.
    pub last_candle: Option<String>,
    /// Evaluation origins (asset-days), before any forecaster's own gaps.
    pub origins: usize,
    /// Of those, the origins the degenerate-market rule refuses (an hour of the last day without
    /// trading): the model as operated has no forecast there, so they leave every comparison
    /// with the model (baselines alone are scored on them).
    pub degenerate_origins: usize,
}

/// GARCH fits in brief.
#[derive(Debug, Clone, Serialize)]
pub struct GarchSummary {
    /// Assets fitted on their own returns.
    pub fitted: usize,
    /// Assets on the pooled fallback.
    pub pooled: usize,
    /// Median alpha of the fitted assets (the fallback's).
    pub median_alpha: Option<f64>,
    /// Median beta of the fitted assets (the fallback's).
    pub median_beta: Option<f64>,
    /// Assets whose fit failed, with the reason.
    pub failures: Vec<(String, String)>,
    /// Each asset's model.
    pub per_asset: BTreeMap<String, AssetGarch>,
}

/// Fitted baseline parameters.
#[derive(Debug, Clone, Serialize)]
pub struct FitsReport {
    /// Pooled EWMA decay.
    pub ewma_lambda: f64,
    /// GARCH fits.
    pub garch: GarchSummary,
    /// HAR regressions per horizon.
    pub har: BTreeMap<usize, Har>,
    /// Shortage logistic maps per horizon.
    pub shortage_logistic: BTreeMap<usize, ShortageLogistic>,
    /// Pooled static threshold (assets with few fit-period origins use it).
    pub static_pooled_lt: f64,
    /// Drawdown calibrations of the baselines' variances (policies `har_calibrated`,
    /// `garch_calibrated`), on the last days of the fit period.
    pub drawdown_calibration: BTreeMap<String, volcast_core::drawdown::DrawdownCalibration>,
    /// Fits that could not be made, and what is missing because of them.
    pub warnings: Vec<String>,
}

/// Diebold-Mariano of the model against the better of HAR and HAR operated.
#[derive(Debug, Clone, Serialize)]
pub struct DmReport {
    /// The baseline compared with (lowest pooled QLIKE).
    pub against: String,
    /// DM statistic; negative favours the model.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Mean QLIKE difference, model minus baseline.
    pub mean_difference: f64,
    /// Newey-West lag, `ceil(H / 24)`.
    pub lag: usize,
    /// The same test on the daily cross-sectional means of the differences (each origin day
    /// once; the pooled test above counts a market-wide day once per asset, so its p-value
    /// overstates the evidence), same lag.
    pub daily_statistic: Option<f64>,
    /// Its two-sided p-value.
    pub daily_p_value: Option<f64>,
    /// Origin days in it.
    pub days: usize,
    /// Assets whose mean QLIKE over their common points is below the baseline's (SPEC's
    /// per-asset wins, against the same baseline as the test).
    pub asset_wins: usize,
    /// Assets with common points.
    pub assets: usize,
}

/// Empirical coverage of one quantile level.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageReport {
    /// Nominal level.
    pub level: f64,
    /// Share of points with RV below the forecast quantile.
    pub coverage: f64,
}

/// Shortage scores at one horizon.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShortageReport {
    /// Points with a label and every shortage forecast.
    pub n_points: usize,
    /// Share of labelled shortages.
    pub base_rate: f64,
    /// ROC AUC per forecaster (`baseline`, `model`).
    pub roc_auc: BTreeMap<String, f64>,
    /// Average precision per forecaster.
    pub pr_auc: BTreeMap<String, f64>,
    /// Brier score per forecaster.
    pub brier: BTreeMap<String, f64>,
}

/// One asset at one horizon.
#[derive(Debug, Clone, Serialize)]
pub struct AssetHorizonReport {
    /// Asset id.
    pub asset: String,
    /// Common volatility points.
    pub n_points: usize,
    /// Mean QLIKE per forecaster.
    pub qlike: BTreeMap<String, f64>,
    /// Shortage points.
    pub shortage_n: usize,
    /// Shortage base rate.
    pub shortage_base_rate: Option<f64>,
    /// Shortage ROC AUC per forecaster (when both classes occur).
    pub shortage_roc_auc: BTreeMap<String, f64>,
}

/// Scores at one horizon.
#[derive(Debug, Clone, Serialize)]
pub struct HorizonReport {
    /// Common points: target exists, is positive, and every forecaster has a positive forecast.
    pub n_points: usize,
    /// Points left out because RV = 0 (SPEC: excluded and counted).
    pub n_zero_rv_excluded: usize,
    /// Pooled mean QLIKE per forecaster.
    pub qlike: BTreeMap<String, f64>,
    /// The model against the better of HAR and HAR operated; null without a model.
    pub dm: Option<DmReport>,
    /// Quantile coverage per forecaster that gives quantiles.
    pub calibration: BTreeMap<String, Vec<CoverageReport>>,
    /// Liquidity shortage.
    pub shortage: ShortageReport,
    /// Per-asset table.
    pub per_asset: Vec<AssetHorizonReport>,
}

/// One policy's backtest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyReport {
    /// Origins scored.
    pub n: usize,
    /// Origins breached.
    pub breaches: usize,
    /// `breaches / n`.
    pub breach_rate: f64,
    /// Mean liquidation threshold.
    pub mean_lt: f64,
    /// Kupiec unconditional-coverage p-value against `1 - alpha`.
    pub kupiec_p_value: Option<f64>,
}

/// One asset's backtest.
#[derive(Debug, Clone, Serialize)]
pub struct AssetRiskReport {
    /// Asset id.
    pub asset: String,
    /// Per policy.
    pub policies: BTreeMap<String, PolicyReport>,
}

/// A breach worth reading about.
#[derive(Debug, Clone, Serialize)]
pub struct BreachEpisode {
    /// Policy breached.
    pub policy: String,
    /// Asset.
    pub asset: String,
    /// Origin (close time), RFC 3339.
    pub origin: String,
    /// Realised fall to the lowest low.
    pub drawdown: f64,
    /// The policy's threshold at the origin.
    pub lt: f64,
}

/// Liquidation-threshold backtest.
#[derive(Debug, Clone, Serialize)]
pub struct RiskReport {
    /// Quantile level.
    pub alpha: f64,
    /// Liquidation window, hours.
    pub tau: usize,
    /// Liquidation bonus.
    pub bonus: f64,
    /// Pooled results per policy (`static`, `garch`, `model`) on their common origins.
    pub policies: BTreeMap<String, PolicyReport>,
    /// Per-asset results.
    pub per_asset: Vec<AssetRiskReport>,
    /// Largest breaches per policy, worst first.
    pub worst_breaches: Vec<BreachEpisode>,
    /// Hindsight bounds per policy at the target breach rate (see [`HindsightBound`]), plus
    /// `static_refit`: per-asset constant thresholds fitted on the evaluation points themselves.
    pub hindsight: BTreeMap<String, HindsightBound>,
    /// Per policy, each day's origins, breaches and mean LT, in day order (the breach timeline).
    pub timeline: BTreeMap<String, Vec<DayOutcome>>,
    /// SPEC's backtest origins: every origin with its `tau` lows and its close. `policies` are
    /// scored on those where every drawdown table has a forecast (their common origins).
    pub spec_origins: usize,
    /// Per drawdown table, SPEC origins it gives no drawdown at (the model at degenerate
    /// markets it refuses to forecast, HAR where RV24, RV168 or RV720 is missing or zero):
    /// left out of every policy's figures.
    pub no_forecast: BTreeMap<String, usize>,
    /// The static policy on all SPEC origins, SPEC's own definition of its backtest.
    pub static_all_origins: PolicyReport,
}

/// One day of a policy's backtest, pooled over assets.
#[derive(Debug, Clone, Serialize)]
pub struct DayOutcome {
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    /// Origins that day.
    pub n: usize,
    /// Breaches among them.
    pub breaches: usize,
    /// Mean LT served.
    pub mean_lt: f64,
}

/// The most a policy's shape could give in hindsight: its log allowance `a = -ln(LT (1 + LB))`
/// replaced by `k a^g`, with `g` from 0.25 to 2 and `k` fitted on the evaluation points
/// themselves so that at most a share `1 - alpha` of them breach; the best mean LT that leaves. Not a policy (it has seen the
/// outcomes): a like-for-like measure of the headroom each forecast leaves.
#[derive(Debug, Clone, Serialize)]
pub struct HindsightBound {
    /// The multiplier `k` (none for `static_refit`).
    pub multiplier: Option<f64>,
    /// The exponent `g` (none for `static_refit`).
    pub exponent: Option<f64>,
    /// Origins scored (the policy's common points).
    pub n: usize,
    /// Breach rate with the multiplier applied.
    pub breach_rate: f64,
    /// Mean LT with the multiplier applied.
    pub mean_lt: f64,
}
