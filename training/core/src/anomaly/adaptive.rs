//! The flag threshold kept at its stated rate as markets change.
//!
//! The detector's thresholds are set on its fit period, and a new year's hours are not the fit
//! period's: new listings, a calmer or wilder market. So the false-alarm rate drifts from the
//! stated one (twice it in one walk-forward fold). In operation, each day's threshold is the
//! fitted one times a **scale**: the `1 - rate` quantile of `score / threshold` over the rows
//! scored in the trailing window before that day (pooled over every market), so that the
//! window's rows would have been flagged at the stated rate. Only rows before the day count:
//! the scale never reads the day it is used on. With too few rows in the window to place the
//! quantile (fewer than [`AdaptiveConfig::min_exceedances`] expected flags), the scale is 1:
//! the fitted threshold.

use serde::{Deserialize, Serialize};

use crate::time::DAY_MS;

/// How the threshold's scale follows the trailing scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveConfig {
    /// Days of scored rows before the day that set its scale.
    pub window_days: u32,
    /// Fewest expected flags in the window (`rows × rate`) for its quantile to be used.
    pub min_exceedances: f64,
    /// Lowest scale.
    pub min_scale: f64,
    /// Highest scale.
    pub max_scale: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            window_days: 90,
            min_exceedances: 20.0,
            min_scale: 0.5,
            max_scale: 4.0,
        }
    }
}

impl AdaptiveConfig {
    /// The window, in ms.
    #[must_use]
    pub fn window_ms(&self) -> i64 {
        i64::from(self.window_days) * DAY_MS
    }

    /// The scale for one window's `score / threshold` ratios (reordered in place): their
    /// `1 - rate` quantile, bounded; `None` when the window holds too few rows.
    #[must_use]
    pub fn scale(&self, ratios: &mut [f64], rate: f64) -> Option<f64> {
        let n = ratios.len();
        if n == 0 || (n as f64) * rate < self.min_exceedances {
            return None;
        }
        // With the scale at the value of index k (ascending), the n - 1 - k rows above it are
        // flagged: about `rate n`.
        let k = (((1.0 - rate) * n as f64).floor() as usize).min(n - 1);
        let (_, q, _) = ratios.select_nth_unstable_by(k, f64::total_cmp);
        Some(q.clamp(self.min_scale, self.max_scale))
    }
}

/// The scales in use, one per model: each model's false-alarm rate drifts on its own.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    /// Asset-hours judged against their market (the `candles_market` model).
    pub candles: f64,
    /// Asset-hours judged alone, without a market reference (the `candles` model: the risk and
    /// stress routes, scans of fewer than five assets, hours the market does not cover).
    #[serde(default = "fitted")]
    pub candles_alone: f64,
    /// Pool snapshots.
    pub pools: f64,
}

/// A scale of 1: the fitted threshold.
const fn fitted() -> f64 {
    1.0
}

impl Default for Scale {
    /// The fitted thresholds.
    fn default() -> Self {
        Self {
            candles: fitted(),
            candles_alone: fitted(),
            pools: fitted(),
        }
    }
}

impl Scale {
    /// The scale of an asset-hour judged against its market (`on_market`) or alone.
    #[must_use]
    pub const fn of_hour(&self, on_market: bool) -> f64 {
        if on_market {
            self.candles
        } else {
            self.candles_alone
        }
    }
}

/// The scale of each day of a period, from the rows scored before it.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyScales {
    /// Start of the first day, Unix ms.
    first_day_ms: i64,
    /// One scale per day from the first; `None` where the window was too thin.
    scales: Vec<Option<f64>>,
}

impl DailyScales {
    /// The scales of the days from `from_ms`'s through `to_ms`'s, each from the `(time_ms,
    /// score / threshold)` of `rows` (any order) in the window before its start.
    #[must_use]
    pub fn fit(rows: &[(i64, f64)], rate: f64, from_ms: i64, to_ms: i64, config: &AdaptiveConfig) -> Self {
        let mut sorted = rows.to_vec();
        sorted.sort_by_key(|r| r.0);
        let first_day_ms = from_ms.div_euclid(DAY_MS) * DAY_MS;
        let days = (to_ms.div_euclid(DAY_MS) * DAY_MS - first_day_ms) / DAY_MS + 1;
        let mut buffer = Vec::new();
        let scales = (0..days.max(0))
            .map(|d| {
                let day = first_day_ms + d * DAY_MS;
                let lo = sorted.partition_point(|r| r.0 < day - config.window_ms());
                let hi = sorted.partition_point(|r| r.0 < day);
                buffer.clear();
                buffer.extend(sorted[lo..hi].iter().map(|r| r.1));
                config.scale(&mut buffer, rate)
            })
            .collect();
        Self { first_day_ms, scales }
    }

    /// Scales measured before ([`Self::days`]): `scales[d]` is the day `d` days after the one of
    /// `first_day_ms`.
    #[must_use]
    pub fn from_days(first_day_ms: i64, scales: Vec<Option<f64>>) -> Self {
        Self {
            first_day_ms: first_day_ms.div_euclid(DAY_MS) * DAY_MS,
            scales,
        }
    }

    /// The scale on the day of `time_ms`: 1 outside the period or where the window was thin.
    #[must_use]
    pub fn at(&self, time_ms: i64) -> f64 {
        let d = (time_ms - self.first_day_ms).div_euclid(DAY_MS);
        usize::try_from(d)
            .ok()
            .and_then(|d| self.scales.get(d).copied().flatten())
            .unwrap_or(1.0)
    }

    /// Each day's start and scale (`None`: the fitted threshold, the window too thin).
    pub fn days(&self) -> impl Iterator<Item = (i64, Option<f64>)> + '_ {
        (0_i64..)
            .zip(&self.scales)
            .map(|(d, s)| (self.first_day_ms + d * DAY_MS, *s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_the_quantile_that_flags_the_stated_rate_of_the_window() {
        let config = AdaptiveConfig::default();
        // 10,000 ratios 0.0001 .. 1.0000 (shuffled order): at rate 1%, the 100 rows above 0.99.
        let mut ratios: Vec<f64> = (1..=10_000)
            .map(|i| f64::from((i * 7919) % 10_000 + 1) / 10_000.0)
            .collect();
        let s = config.scale(&mut ratios, 0.01).unwrap_or(f64::NAN);
        assert!((s - 0.9901).abs() < 1e-9, "{s}");
        let above = ratios.iter().filter(|&&r| r > s).count();
        assert_eq!(above, 99);
        // Too few rows for 20 expected flags: none.
        assert_eq!(config.scale(&mut ratios[..1_000], 0.01), None);
        // Bounded.
        let mut wild = vec![100.0; 5_000];
        assert_eq!(config.scale(&mut wild, 0.01), Some(config.max_scale));
    }

    #[test]
    fn each_day_reads_only_the_window_before_it() {
        let config = AdaptiveConfig {
            window_days: 2,
            min_exceedances: 1.0,
            ..AdaptiveConfig::default()
        };
        let hour = DAY_MS / 24;
        // Ratios of 1 on days 0-1, of 2 on days 2-3: 48 rows per day.
        let rows: Vec<(i64, f64)> = (0..96)
            .map(|h| (h * hour, if h < 48 { 1.0 } else { 2.0 }))
            .collect();
        let scales = DailyScales::fit(&rows, 0.05, 0, 4 * DAY_MS, &config);
        // Day 0 has no window; day 1 one day of 1s (48 rows, 2.4 expected flags); day 2 two
        // days of 1s; day 3 a 1s day and a 2s day; day 4 two days of 2s.
        let by_day: Vec<Option<f64>> = scales.days().map(|d| d.1).collect();
        assert_eq!(by_day, vec![None, Some(1.0), Some(1.0), Some(2.0), Some(2.0)]);
        assert!((scales.at(3 * DAY_MS + 5 * hour) - 2.0).abs() < 1e-12);
        assert!((scales.at(-1) - 1.0).abs() < 1e-12);
        assert!((scales.at(10 * DAY_MS) - 1.0).abs() < 1e-12);
        // Cutting the rows after day 2 changes nothing up to day 2.
        let cut: Vec<(i64, f64)> = rows.iter().copied().filter(|r| r.0 < 2 * DAY_MS).collect();
        let early = DailyScales::fit(&cut, 0.05, 0, 2 * DAY_MS, &config);
        assert_eq!(
            early.days().collect::<Vec<_>>(),
            scales.days().take(3).collect::<Vec<_>>()
        );
    }
}
