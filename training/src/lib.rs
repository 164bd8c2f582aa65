//! volcast's shared core: candles and their validation, SPEC's targets, the econometric
//! baselines, risk formulas, and the `evaluate` engine that scores any forecaster.
//!
//! Everything here is pure Rust; file loading with polars lives behind the `data` feature
//! (default), so the server can depend on this crate with `default-features = false` and never
//! pull the data stack in.

#[cfg(feature = "model")]
pub mod artifact;
pub mod baselines;
#[cfg(feature = "model")]
pub mod calibrate;
pub mod candles;
#[cfg(feature = "data")]
pub mod cli;
pub mod curve;
#[cfg(feature = "data")]
pub mod data;
#[cfg(feature = "model")]
pub mod dataset;
#[cfg(feature = "model")]
pub mod device;
pub mod drawdown;
pub mod evaluate;
pub mod features;
pub mod forecast;
pub mod grid;
#[cfg(feature = "model")]
pub mod inference;
pub mod metrics;
#[cfg(feature = "model")]
pub mod model;
pub mod panel;
#[cfg(all(feature = "data", feature = "model"))]
pub mod pipeline;
pub mod risk;
#[cfg(feature = "model")]
pub mod rolling;
pub mod stress;
pub mod synth;
pub mod targets;
pub mod time;
#[cfg(feature = "model")]
pub mod training;

use grid::{Asset, HourlyGrid};

/// Lays loaded candles on hourly grids, keeping their order.
#[must_use]
pub fn to_panel(assets: &[candles::AssetCandles]) -> Vec<Asset> {
    use rayon::prelude::*;
    assets
        .par_iter()
        .map(|a| Asset {
            id: a.asset.clone(),
            grid: HourlyGrid::from_candles(&a.candles),
        })
        .collect()
}
