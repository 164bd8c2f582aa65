//! The seam between whatever makes forecasts and the code that scores them.
//!
//! `evaluate` asks a [`Forecaster`] for a [`ForecastTable`] at a list of [`Origin`]s and scores
//! every table the same way: the econometric baselines, the neural model, or anything else.

use std::collections::BTreeMap;

use crate::grid::Asset;

/// Horizons SPEC serves and evaluates, in hours.
pub const HORIZONS: [usize; 3] = [4, 24, 168];

/// An origin: an asset of the panel and a slot of its grid (the origin's close hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// Index of the asset in the panel.
    pub asset: usize,
    /// Slot in that asset's grid.
    pub slot: usize,
}

/// The risk question asked at each origin: the `alpha`-quantile of the largest fall within
/// `tau` hours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrawdownQuery {
    /// Quantile level, in (0.5, 1).
    pub alpha: f64,
    /// Liquidation window in hours.
    pub tau: usize,
}

/// What a forecaster is asked.
#[derive(Debug, Clone, Copy)]
pub struct ForecastRequest<'a> {
    /// The panel the origins point into.
    pub assets: &'a [Asset],
    /// Where to forecast.
    pub origins: &'a [Origin],
    /// Horizons wanted.
    pub horizons: &'a [usize],
    /// The drawdown quantile wanted for the risk backtest.
    pub drawdown: DrawdownQuery,
}

/// Shortage forecasts at each origin for one horizon.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShortageForecast {
    /// Score that ranks origins (ROC and PR AUC); higher means a shortage is likelier.
    pub score: Vec<f64>,
    /// Probability of a shortage (Brier).
    pub probability: Vec<f64>,
}

/// Forecasts of one quantile level of RV at each origin.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileForecast {
    /// Level in (0, 1).
    pub level: f64,
    /// The level's RV quantile per origin.
    pub values: Vec<f64>,
}

/// One horizon's forecasts, each vector aligned with the request's origins; NaN means "no
/// forecast here".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HorizonForecasts {
    /// Forecast variance of the horizon's summed hourly returns.
    pub variance: Vec<f64>,
    /// Shortage score and probability, when the forecaster makes them.
    pub shortage: Option<ShortageForecast>,
    /// RV quantiles, when the forecaster makes them.
    pub quantiles: Vec<QuantileForecast>,
}

/// Everything one forecaster said about a request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ForecastTable {
    /// Column name in reports (`ewma`, `garch`, `har`, `model`).
    pub name: String,
    /// Forecasts per horizon.
    pub horizons: BTreeMap<usize, HorizonForecasts>,
    /// D(alpha, tau) per origin for the request's drawdown query, when the forecaster makes it.
    pub drawdown: Option<Vec<f64>>,
}

/// A forecaster failed for a reason other than missing data (missing data is NaN).
#[derive(Debug, thiserror::Error)]
#[error("{forecaster}: {message}")]
pub struct ForecastError {
    /// Which forecaster.
    pub forecaster: String,
    /// What went wrong.
    pub message: String,
}

/// Anything that forecasts at origins of a panel.
pub trait Forecaster {
    /// Column name in reports.
    fn name(&self) -> &str;

    /// Forecasts at every origin of the request.
    ///
    /// # Errors
    /// [`ForecastError`] when the forecaster cannot run at all.
    fn forecast(&self, request: &ForecastRequest<'_>) -> Result<ForecastTable, ForecastError>;
}
