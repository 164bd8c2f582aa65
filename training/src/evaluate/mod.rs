//! One way to score any set of forecasts: fit the baselines on the fit period, forecast at
//! every daily origin of the evaluation period, and score every forecaster on the same points.

pub mod render;
pub mod report;
pub mod risk;
pub mod score;

use std::collections::BTreeMap;
use std::time::Instant;

use rayon::prelude::*;

use report::{
    ConfigReport, DataReport, EvaluationReport, FitsReport, GarchSummary, HorizonReport,
    REPORT_SCHEMA_VERSION,
};
use risk::{Backtest, score_risk};
use score::score_horizon;
use volcast_core::backtest::StaticPolicy;
use volcast_core::baselines::FitError;
use volcast_core::baselines::garch::{AssetGarch, median_alpha_beta};
use volcast_core::baselines::set::BaselineSet;
use volcast_core::drawdown::{CALIBRATION_DAYS, DrawdownCalibration};
use volcast_core::forecast::{
    DrawdownQuery, ForecastError, ForecastRequest, ForecastTable, Forecaster, Origin,
};
use volcast_core::grid::Asset;
use volcast_core::panel::{PreparedAsset, daily_slots, prepare};
use volcast_core::policy;
use volcast_core::targets::drawdown;
use volcast_core::time::{HOUR_MS, close_hour_of_open_ms, format_ms, hour_to_ms};

/// What to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalConfig {
    /// Open time (Unix ms) of the last candle fitting may use.
    pub fit_until_ms: i64,
    /// First origin (close time, Unix ms) scored.
    pub eval_from_ms: i64,
    /// Last origin (close time, Unix ms) scored.
    pub eval_until_ms: i64,
    /// Horizons in hours.
    pub horizons: Vec<usize>,
    /// Risk quantile level.
    pub alpha: f64,
    /// Liquidation window, hours.
    pub tau: usize,
    /// Liquidation bonus.
    pub bonus: f64,
    /// Calibrate the HAR and GARCH drawdowns with a fitted exponent ([`volcast_core::drawdown`]), as
    /// `calibrate --fit-exponent` does the model's.
    pub fit_exponent: bool,
    /// When the model is operated with its corrections re-measured daily on this many trailing
    /// days, HAR is scored operated the same way too (`har_operated`, SPEC's "Operated
    /// comparison"), and every comparison with the model is against the better of the two.
    pub operated_days: Option<usize>,
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Bad settings.
    #[error("invalid evaluation settings: {0}")]
    Config(String),
    /// A baseline could not be fitted.
    #[error("fitting the baselines")]
    Fit(#[from] FitError),
    /// The model failed.
    #[error("forecasting")]
    Forecast(#[from] ForecastError),
}

impl EvalConfig {
    fn check(&self) -> Result<(), EvalError> {
        let bad = |m: String| Err(EvalError::Config(m));
        if self.eval_from_ms > self.eval_until_ms {
            return bad(format!(
                "eval-from {} is after eval-until {}",
                format_ms(self.eval_from_ms),
                format_ms(self.eval_until_ms)
            ));
        }
        if self.eval_from_ms <= self.fit_until_ms {
            return bad(format!(
                "eval-from {} must be after fit-until {}: origins scored must not be fitted on",
                format_ms(self.eval_from_ms),
                format_ms(self.fit_until_ms)
            ));
        }
        check_backtest(self.alpha, self.tau, self.bonus).map_err(EvalError::Config)?;
        if self.horizons.is_empty() || self.horizons.iter().any(|&h| h == 0 || h > 720) {
            return bad(format!("horizons {:?} must be 1 to 720 hours", self.horizons));
        }
        Ok(())
    }
}

/// Checks the backtest's settings against the risk policy's ranges, as everywhere else (a
/// command checks them before it trains anything).
///
/// # Errors
/// The first out of range, naming its flag.
pub fn check_backtest(alpha: f64, tau: usize, bonus: f64) -> Result<(), String> {
    let checks = [
        policy::ALPHA_RANGE.check("--alpha", alpha),
        policy::TAU_RANGE.check("--tau", tau as f64),
        policy::BONUS_RANGE.check("--bonus", bonus),
    ];
    match checks.into_iter().find(Result::is_err) {
        Some(Err(e)) => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// Fits the baselines, forecasts with them and with `model` (if any), and scores them all.
///
/// # Errors
/// [`EvalError`] on bad settings, a failed pooled fit or a failed model.
pub fn evaluate(
    assets: &[Asset],
    config: &EvalConfig,
    model: Option<(&dyn Forecaster, String)>,
) -> Result<EvaluationReport, EvalError> {
    config.check()?;
    let mut stopwatch = Stopwatch::start();

    let fit_end_hour = close_hour_of_open_ms(config.fit_until_ms);
    let prepared = prepare(assets, &config.horizons);
    stopwatch.lap("prepare_s");

    let baselines = BaselineSet::fit(assets, &prepared, fit_end_hour, &config.horizons)?;
    let static_policy = fit_static(assets, fit_end_hour, config)?;
    stopwatch.lap("fit_s");

    let origins = eval_origins(assets, config);
    if origins.is_empty() {
        return Err(EvalError::Config(format!(
            "no asset has a candle at a daily origin from {} to {}: nothing to score (the data \
             ends at {})",
            format_ms(config.eval_from_ms),
            format_ms(config.eval_until_ms),
            assets
                .iter()
                .map(|a| a.grid.last_hour())
                .max()
                .map_or_else(|| "no candle".into(), |h| format_ms(h * HOUR_MS))
        )));
    }
    let request = ForecastRequest {
        assets,
        origins: &origins,
        horizons: &config.horizons,
        drawdown: DrawdownQuery {
            alpha: config.alpha,
            tau: config.tau,
        },
    };
    let (mut tables, calibrations) =
        forecast_baselines(&baselines, &prepared, &request, fit_end_hour, config.fit_exponent);
    if let Some(days) = config.operated_days {
        tables.push(crate::rolling::har_operated(
            &baselines.har,
            &prepared,
            &request,
            days,
        ));
    }
    let model_name = forecast_model(model, &request, &mut tables)?;
    stopwatch.lap("forecast_s");

    let horizons: BTreeMap<usize, HorizonReport> = config
        .horizons
        .par_iter()
        .map(|&h| (h, score_horizon(h, assets, &prepared, &origins, &tables)))
        .collect();
    if horizons.values().all(|r| r.n_points == 0) {
        return Err(EvalError::Config(format!(
            "no origin from {} to {} has a complete outcome at any horizon: nothing to score \
             (the evaluation period ends too close to the data's end?)",
            format_ms(config.eval_from_ms),
            format_ms(config.eval_until_ms)
        )));
    }
    let risk = score_risk(
        assets,
        &origins,
        &static_policy,
        &tables,
        Backtest {
            alpha: config.alpha,
            tau: config.tau,
            bonus: config.bonus,
        },
    );
    stopwatch.lap("score_s");

    Ok(EvaluationReport {
        schema_version: REPORT_SCHEMA_VERSION,
        config: config_report(config, model_name),
        data: data_report(assets, &origins),
        fits: fits_report(assets, &baselines, &static_policy, calibrations),
        horizons,
        risk,
        blend_hindsight: Vec::new(),
        timings: stopwatch.timings,
    })
}

/// Wall-clock seconds of each step of an evaluation, by step name.
struct Stopwatch {
    /// When the current step began.
    clock: Instant,
    /// Seconds of each finished step.
    timings: BTreeMap<String, f64>,
}

impl Stopwatch {
    /// Starts timing the first step.
    fn start() -> Self {
        Self {
            clock: Instant::now(),
            timings: BTreeMap::new(),
        }
    }

    /// Records the step that just ended as `name` and starts the next.
    fn lap(&mut self, name: &str) {
        self.timings
            .insert(name.to_owned(), self.clock.elapsed().as_secs_f64());
        self.clock = Instant::now();
    }
}

/// The daily origins of every asset from `eval_from` (rounded up to the hour) to `eval_until`.
fn eval_origins(assets: &[Asset], config: &EvalConfig) -> Vec<Origin> {
    let from_hour =
        config.eval_from_ms.div_euclid(HOUR_MS) + i64::from(config.eval_from_ms.rem_euclid(HOUR_MS) != 0);
    let until_hour = config.eval_until_ms.div_euclid(HOUR_MS);
    assets
        .iter()
        .enumerate()
        .flat_map(|(a, asset)| {
            daily_slots(asset, from_hour, until_hour).map(move |slot| Origin { asset: a, slot })
        })
        .collect()
}

/// Forecasts with the baselines, then calibrates their drawdowns on the last
/// [`CALIBRATION_DAYS`] of the fit period and adds the calibrated tables.
fn forecast_baselines(
    baselines: &BaselineSet,
    prepared: &[PreparedAsset],
    request: &ForecastRequest<'_>,
    fit_end_hour: i64,
    fit_exponent: bool,
) -> (Vec<ForecastTable>, BTreeMap<String, DrawdownCalibration>) {
    let mut tables = baselines.forecast(prepared, request);
    let calibration_from = fit_end_hour - 24 * CALIBRATION_DAYS;
    let calibrations = baselines.calibrate_drawdowns(
        request.assets,
        prepared,
        calibration_from,
        fit_end_hour,
        fit_exponent,
    );
    tables.extend(baselines.calibrated_tables(&calibrations, prepared, request));
    (tables, calibrations)
}

/// Forecasts with `model` (if any), appends its table as [`score::MODEL`], and returns its name.
fn forecast_model(
    model: Option<(&dyn Forecaster, String)>,
    request: &ForecastRequest<'_>,
    tables: &mut Vec<ForecastTable>,
) -> Result<Option<String>, EvalError> {
    Ok(match model {
        Some((forecaster, name)) => {
            let mut table = forecaster.forecast(request)?;
            table.name = score::MODEL.to_owned();
            tables.push(table);
            Some(name)
        }
        None => None,
    })
}

/// The settings as reported: times formatted, and the model's name.
fn config_report(config: &EvalConfig, model: Option<String>) -> ConfigReport {
    ConfigReport {
        fit_until: format_ms(config.fit_until_ms),
        eval_from: format_ms(config.eval_from_ms),
        eval_until: format_ms(config.eval_until_ms),
        horizons: config.horizons.clone(),
        alpha: config.alpha,
        tau: config.tau,
        bonus: config.bonus,
        model,
        operated_days: config.operated_days,
        fit_exponent: config.fit_exponent,
        operation: None,
    }
}

/// The static policy from fit-period daily origins whose `tau` window ends by the fit end.
fn fit_static(assets: &[Asset], fit_end_hour: i64, config: &EvalConfig) -> Result<StaticPolicy, EvalError> {
    let tau = i64::try_from(config.tau).unwrap_or(i64::MAX);
    let ratios: Vec<Vec<f64>> = assets
        .par_iter()
        .map(|asset| {
            daily_slots(asset, i64::MIN / 2, fit_end_hour - tau)
                .filter_map(|slot| drawdown(&asset.grid, slot, config.tau).map(|d| 1.0 - d))
                .collect()
        })
        .collect();
    StaticPolicy::fit(ratios, 1.0 - config.alpha, config.bonus).ok_or_else(|| {
        EvalError::Fit(FitError::TooLittleData(
            "static policy: no fit-period origin with a complete liquidation window".to_owned(),
        ))
    })
}

fn data_report(assets: &[Asset], origins: &[Origin]) -> DataReport {
    let candles = assets
        .iter()
        .map(|a| a.grid.close.iter().filter(|c| !c.is_nan()).count())
        .sum();
    let first = assets
        .iter()
        .filter(|a| !a.grid.is_empty())
        .map(|a| a.grid.first_hour)
        .min();
    let last = assets
        .iter()
        .filter(|a| !a.grid.is_empty())
        .map(|a| a.grid.last_hour())
        .max();
    DataReport {
        assets: assets.len(),
        candles,
        // Candles are labelled by open time in files: one hour before the close.
        first_candle: first.map(|h| format_ms(hour_to_ms(h - 1))),
        last_candle: last.map(|h| format_ms(hour_to_ms(h - 1))),
        origins: origins.len(),
        degenerate_origins: origins
            .iter()
            .filter(|o| !assets[o.asset].grid.hours_without_trading(o.slot).is_empty())
            .count(),
    }
}

fn fits_report(
    assets: &[Asset],
    baselines: &BaselineSet,
    static_policy: &StaticPolicy,
    drawdown_calibration: BTreeMap<String, DrawdownCalibration>,
) -> FitsReport {
    let fitted = baselines
        .garch
        .iter()
        .filter(|g| matches!(g, AssetGarch::Fitted { .. }))
        .count();
    let medians = median_alpha_beta(&baselines.garch);
    FitsReport {
        ewma_lambda: baselines.ewma.lambda,
        garch: GarchSummary {
            fitted,
            pooled: baselines.garch.len() - fitted,
            median_alpha: medians.map(|m| m.0),
            median_beta: medians.map(|m| m.1),
            failures: baselines.garch_failures.clone(),
            per_asset: assets
                .iter()
                .zip(&baselines.garch)
                .map(|(a, g)| (a.id.clone(), *g))
                .collect(),
        },
        har: baselines.har.clone(),
        shortage_logistic: baselines.shortage.clone(),
        static_pooled_lt: static_policy.pooled,
        drawdown_calibration,
        warnings: baselines.warnings.clone(),
    }
}
