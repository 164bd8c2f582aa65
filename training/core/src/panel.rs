//! Per-asset series derived once and shared by fitting, forecasting and scoring: realized
//! variances over every window anyone needs, and SPEC's mean illiquidity M_H.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::baselines::har::REGRESSOR_WINDOWS;
use crate::grid::Asset;
use crate::targets::{ShortageAtOrigin, illiquidity, realized_variance, rolling_mean, shortage_at};

/// Derived series of one asset, aligned with its grid's slots.
#[derive(Debug, Clone)]
pub struct PreparedAsset {
    /// Realized variance of the window ending at each slot, per window length.
    pub rv: BTreeMap<usize, Vec<f64>>,
    /// M_H (mean illiquidity of the window ending at each slot), per horizon.
    pub illiq_mean: BTreeMap<usize, Vec<f64>>,
}

impl PreparedAsset {
    /// Computes every window the horizons and the HAR regressors need.
    #[must_use]
    pub fn new(asset: &Asset, horizons: &[usize]) -> Self {
        let mut windows: Vec<usize> = horizons.iter().copied().chain(REGRESSOR_WINDOWS).collect();
        windows.sort_unstable();
        windows.dedup();
        let rv = windows
            .iter()
            .map(|&w| (w, realized_variance(&asset.grid.ret, w)))
            .collect();
        let illiq = illiquidity(&asset.grid);
        let illiq_mean = horizons.iter().map(|&h| (h, rolling_mean(&illiq, h))).collect();
        Self { rv, illiq_mean }
    }

    /// RV of `window` hours ending at `slot` (NaN when missing or out of range).
    #[must_use]
    pub fn rv_at(&self, window: usize, slot: usize) -> f64 {
        self.rv
            .get(&window)
            .and_then(|v| v.get(slot))
            .copied()
            .unwrap_or(f64::NAN)
    }

    /// M_H at origin slot `t` for each of `horizons` (NaN where it does not exist): the
    /// illiquidity the risk policy's slippage reads.
    #[must_use]
    pub fn illiquidity_at(&self, slot: usize, horizons: &[usize]) -> Vec<f64> {
        horizons
            .iter()
            .map(|h| {
                self.illiq_mean
                    .get(h)
                    .and_then(|m| m.get(slot))
                    .copied()
                    .unwrap_or(f64::NAN)
            })
            .collect()
    }

    /// The forward target RV(t, H) for origin slot `t`.
    #[must_use]
    pub fn target(&self, slot: usize, horizon: usize) -> f64 {
        self.rv_at(horizon, slot + horizon)
    }

    /// The HAR regressors RV24, RV168 and RV720 at origin slot `t`.
    #[must_use]
    pub fn har_regressors(&self, slot: usize) -> [f64; 3] {
        REGRESSOR_WINDOWS.map(|w| self.rv_at(w, slot))
    }

    /// Shortage label and baseline score at origin slot `t`.
    #[must_use]
    pub fn shortage(&self, slot: usize, horizon: usize, scratch: &mut Vec<f64>) -> ShortageAtOrigin {
        match self.illiq_mean.get(&horizon) {
            Some(m) if slot < m.len() => shortage_at(m, slot, horizon, scratch),
            _ => ShortageAtOrigin {
                label: None,
                score: None,
            },
        }
    }
}

/// Prepares every asset in parallel.
#[must_use]
pub fn prepare(assets: &[Asset], horizons: &[usize]) -> Vec<PreparedAsset> {
    assets
        .par_iter()
        .map(|a| PreparedAsset::new(a, horizons))
        .collect()
}

/// Slots of the daily origins (close at 00:00 UTC) whose close hour lies in `[from, until]`.
pub fn daily_slots(asset: &Asset, from_hour: i64, until_hour: i64) -> impl Iterator<Item = usize> + '_ {
    let grid = &asset.grid;
    let first = from_hour.max(grid.first_hour);
    let first_daily = first + (24 - first.rem_euclid(24)) % 24;
    let last = until_hour.min(grid.last_hour());
    (first_daily..=last).step_by(24).filter_map(move |h| grid.slot(h))
}

/// Lays loaded candles on hourly grids, keeping their order.
#[must_use]
pub fn to_panel(assets: &[crate::candles::AssetCandles]) -> Vec<Asset> {
    use rayon::prelude::*;
    assets
        .par_iter()
        .map(|a| Asset {
            id: a.asset.clone(),
            grid: crate::grid::HourlyGrid::from_candles(&a.candles),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candles::Candle;
    use crate::grid::HourlyGrid;
    use crate::time::HOUR_MS;

    #[test]
    fn daily_slots_fall_on_midnight() {
        let candles: Vec<Candle> = (5..100)
            .map(|h| Candle {
                open_time: h * HOUR_MS,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 1.0,
                quote_volume: 1.0,
            })
            .collect();
        let asset = Asset {
            id: "X".into(),
            grid: HourlyGrid::from_candles(&candles),
        };
        let hours: Vec<i64> = daily_slots(&asset, 0, 1000).map(|s| asset.grid.hour(s)).collect();
        assert_eq!(hours, vec![24, 48, 72, 96]);
        let hours: Vec<i64> = daily_slots(&asset, 48, 72).map(|s| asset.grid.hour(s)).collect();
        assert_eq!(hours, vec![48, 72]);
    }
}
