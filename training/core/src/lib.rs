//! volcast's pure core: everything SPEC defines, in plain Rust with no neural-network or
//! file-loading dependency, shared by the trainer, `evaluate`, the stress command and the server.
//!
//! # Layout
//! From the bottom up (each module imports only those above it in this list, or none):
//! - [`time`]: hour arithmetic, RFC 3339 / date bounds for the command lines.
//! - [`candles`]: the candle type and SPEC's bad-input rules (file, field and row in every error).
//! - [`grid`]: candles laid on a dense hourly grid, log returns; [`panel::to_panel`] lays many.
//! - [`targets`]: SPEC's targets: realized variance, Amihud illiquidity, shortage labels, drawdowns.
//! - [`synth`]: synthetic GARCH candles for tests, demos and `data/sample`.
//! - [`baselines`]: EWMA, GARCH(1,1), log HAR-RV and the shortage baseline, fitted and forecast.
//! - [`panel`]: per-asset series derived once (trailing variances, `M_H`) for fitting and scoring.
//! - [`features`]: the model's inputs at an origin, computed from candles alone.
//! - [`forecast`]: the seam between forecasters and scoring ([`forecast::Forecaster`]).
//! - [`curve`]: the variance over any number of hours from per-horizon forecasts.
//! - [`drawdown`]: the drawdown rule `D(alpha, tau)` and its calibration.
//! - [`policy`]: **the one risk policy**: settings, liquidity, bonus, LT, max LTV, margins.
//! - [`backtest`]: SPEC's liquidation-threshold backtest and the static policy.
//! - [`scoring`]: scoring rules and tests: QLIKE, Diebold-Mariano, ROC/PR AUC, Brier, Kupiec.
//! - [`stress`]: the Monte Carlo stress simulation of a lending book, and its summaries.
//! - [`anomaly`]: market-behaviour anomaly detection: activity features, the learned detector,
//!   the injected manipulations it is evaluated on.

pub mod anomaly;
pub mod backtest;
pub mod baselines;
pub mod candles;
pub mod curve;
pub mod drawdown;
pub mod features;
pub mod forecast;
pub mod grid;
pub mod panel;
pub mod policy;
pub mod scoring;
pub mod stress;
pub mod synth;
pub mod targets;
pub mod time;
