//! Historical stress windows: the worst non-overlapping falls of an asset's fit period, kept as
//! hourly paths that [`super::Scenario::Replay`] applies to today's price.

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Scenario;
use crate::features::MARKET_ASSET;
use crate::grid::Asset;
use crate::targets::covered;
use crate::time::format_hour;

/// Length of the stored windows, hours (the longest served horizon).
pub const REPLAY_HORIZON: usize = 168;
/// Windows stored in an artifact.
pub const REPLAY_COUNT: usize = 8;

/// A historical window: the fall from the close at its origin to the lowest low within it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayWindow {
    /// `<asset> <YYYY-MM-DD>`: the UTC day (by candle open time) of the window's largest fall
    /// from the previous day's last close to the day's low.
    pub name: String,
    /// Asset id.
    pub asset: String,
    /// Close hour of the origin, `YYYY-MM-DD HH:MM` UTC.
    pub origin: String,
    /// Close hour of the last candle of the window.
    pub end: String,
    /// `1 - lowest low / close at the origin`.
    pub fall: f64,
    /// Per hour: `(ln close_h / close_{h-1}, ln low_h / close_{h-1})`; a missing candle is
    /// `(0, 0)` and the move across the gap lands on the next candle.
    pub log_returns: Vec<(f64, f64)>,
}

impl ReplayWindow {
    /// The scenario that replays this window.
    #[must_use]
    pub fn scenario(&self) -> Scenario {
        Scenario::Replay {
            name: self.name.clone(),
            log_returns: self.log_returns.clone(),
        }
    }
}

/// The `count` worst non-overlapping windows of `horizon_hours` in `asset`'s grid whose
/// candles all close by `fit_end_hour`, worst first. A window needs its origin's close and 90%
/// of its candles (SPEC's rule).
#[must_use]
pub fn worst_windows(
    asset: &Asset,
    fit_end_hour: i64,
    horizon_hours: usize,
    count: usize,
) -> Vec<ReplayWindow> {
    let g = &asset.grid;
    let h = horizon_hours;
    let end = g.slots_until(fit_end_hour);
    if h == 0 || count == 0 || end <= h {
        return Vec::new();
    }
    let mut falls: Vec<(f64, usize)> = (0..end - h)
        .into_par_iter()
        .filter_map(|t| {
            let close = g.close[t];
            if close.is_nan() {
                return None;
            }
            let (mut lowest, mut n) = (f64::INFINITY, 0);
            for &low in &g.low[t + 1..=t + h] {
                if !low.is_nan() {
                    n += 1;
                    lowest = lowest.min(low);
                }
            }
            covered(n, h).then_some((1.0 - lowest / close, t))
        })
        .collect();
    falls.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut chosen: Vec<(f64, usize)> = Vec::with_capacity(count);
    for (fall, t) in falls {
        if chosen.iter().all(|&(_, c)| c.abs_diff(t) >= h) {
            chosen.push((fall, t));
            if chosen.len() == count {
                break;
            }
        }
    }
    chosen
        .into_iter()
        .map(|(fall, t)| window(asset, t, h, fall))
        .collect()
}

fn window(asset: &Asset, t: usize, h: usize, fall: f64) -> ReplayWindow {
    let g = &asset.grid;
    let origin_close = g.close[t];
    let mut log_returns = Vec::with_capacity(h);
    let mut y = 0.0;
    // The worst day: per UTC day of candle open times, the fall from the last close before the
    // day (inside the window, or the origin) to the day's lowest low.
    let (mut worst_day, mut worst_fall) = (None, f64::NEG_INFINITY);
    let (mut day, mut reference, mut day_low) = (i64::MIN, origin_close, f64::INFINITY);
    let mut last_close = origin_close;
    for s in t + 1..=t + h {
        let candle_day = (g.hour(s) - 1).div_euclid(24);
        if candle_day != day {
            if day != i64::MIN && 1.0 - day_low / reference > worst_fall {
                worst_fall = 1.0 - day_low / reference;
                worst_day = Some(day);
            }
            day = candle_day;
            reference = last_close;
            day_low = f64::INFINITY;
        }
        if g.has_candle(s) {
            let close = (g.close[s] / origin_close).ln();
            let low = (g.low[s] / origin_close).ln();
            log_returns.push((close - y, low - y));
            y = close;
            last_close = g.close[s];
            day_low = day_low.min(g.low[s]);
        } else {
            log_returns.push((0.0, 0.0));
        }
    }
    if day != i64::MIN && 1.0 - day_low / reference > worst_fall {
        worst_day = Some(day);
    }
    let date = worst_day
        .and_then(|d| DateTime::<Utc>::from_timestamp(d * 86_400, 0))
        .map_or_else(|| format_hour(g.hour(t)), |d| d.format("%Y-%m-%d").to_string());
    ReplayWindow {
        name: format!("{} {date}", asset.id),
        asset: asset.id.clone(),
        origin: format_hour(g.hour(t)),
        end: format_hour(g.hour(t + h)),
        fall,
        log_returns,
    }
}

/// The replay windows an artifact carries: the market asset's ([`MARKET_ASSET`])
/// [`REPLAY_COUNT`] worst [`REPLAY_HORIZON`]-hour windows up to the fit end; empty when the
/// panel lacks it.
#[must_use]
pub fn market_stress_scenarios(assets: &[Asset], fit_end_hour: i64) -> Vec<ReplayWindow> {
    assets
        .iter()
        .find(|a| a.id == MARKET_ASSET)
        .map(|a| worst_windows(a, fit_end_hour, REPLAY_HORIZON, REPLAY_COUNT))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candles::Candle;
    use crate::grid::HourlyGrid;
    use crate::time::HOUR_MS;

    fn asset(closes: &[f64]) -> Asset {
        let start = 1_583_971_200_000 / HOUR_MS; // 2020-03-12 00:00 open
        let candles: Vec<Candle> = closes
            .iter()
            .enumerate()
            .map(|(i, &c)| Candle {
                open_time: (start + i64::try_from(i).unwrap()) * HOUR_MS,
                open: c,
                high: c,
                low: c * 0.99,
                close: c,
                volume: 1.0,
                quote_volume: 1.0,
            })
            .collect();
        Asset {
            id: "BTCUSDT".into(),
            grid: HourlyGrid::from_candles(&candles),
        }
    }

    #[test]
    fn finds_the_worst_falls_without_overlap() {
        // Flat at 100, a fall to 50 around hour 30, flat, a fall to 80 around hour 100.
        let mut closes = vec![100.0; 160];
        for (i, c) in closes.iter_mut().enumerate() {
            if (30..40).contains(&i) {
                *c = 50.0;
            }
            if (100..110).contains(&i) {
                *c = 80.0;
            }
        }
        let a = asset(&closes);
        let w = worst_windows(&a, a.grid.last_hour(), 10, 3);
        assert_eq!(w.len(), 3);
        assert!((w[0].fall - (1.0 - 49.5 / 100.0)).abs() < 1e-12, "{}", w[0].fall);
        assert!((w[1].fall - (1.0 - 79.2 / 100.0)).abs() < 1e-12, "{}", w[1].fall);
        assert!(w[2].fall < 0.05);
        assert_eq!(w[0].name, "BTCUSDT 2020-03-13");
        // The replayed path ends where the prices did.
        let total: f64 = w[0].log_returns.iter().map(|r| r.0).sum();
        assert_eq!(w[0].log_returns.len(), 10);
        let lowest = w[0]
            .log_returns
            .iter()
            .scan(0.0, |y, &(c, l)| {
                let low = *y + l;
                *y += c;
                Some(low)
            })
            .fold(f64::INFINITY, f64::min);
        assert!((lowest.exp() - 0.495).abs() < 1e-12);
        assert!(total.is_finite());
        // Nothing after the fit end is used.
        let early = worst_windows(&a, a.grid.hour(60), 10, 5);
        assert!(early.iter().all(|x| (x.fall - w[1].fall).abs() > 1e-9));
        assert!(worst_windows(&a, a.grid.hour(5), 10, 5).is_empty());
    }
}
