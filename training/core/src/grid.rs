//! Candles laid on a dense hourly grid, with the log returns SPEC defines.
//!
//! Slot `i` of a [`HourlyGrid`] is the candle that closes at hour `first_hour + i`. A missing
//! candle is a NaN slot: prices are never filled across a gap, and a return exists only where the
//! candle and the one before it both do.

use crate::candles::Candle;
use crate::time::close_hour_of_open_ms;

/// One asset's candles on a dense grid of close hours.
#[derive(Debug, Clone, PartialEq)]
pub struct HourlyGrid {
    /// Close hour (hours since the Unix epoch) of slot 0.
    pub first_hour: i64,
    /// Open price per slot; NaN where the candle is missing.
    pub open: Vec<f64>,
    /// Close price per slot; NaN where the candle is missing.
    pub close: Vec<f64>,
    /// High price per slot; NaN where missing.
    pub high: Vec<f64>,
    /// Low price per slot; NaN where missing.
    pub low: Vec<f64>,
    /// Quote volume per slot; NaN where missing.
    pub quote_volume: Vec<f64>,
    /// `ln(close[i] / close[i-1])`; NaN unless both candles exist.
    pub ret: Vec<f64>,
}

impl HourlyGrid {
    /// Lays validated, strictly increasing candles on the grid.
    #[must_use]
    pub fn from_candles(candles: &[Candle]) -> Self {
        let (Some(first), Some(last)) = (candles.first(), candles.last()) else {
            return Self {
                first_hour: 0,
                open: Vec::new(),
                close: Vec::new(),
                high: Vec::new(),
                low: Vec::new(),
                quote_volume: Vec::new(),
                ret: Vec::new(),
            };
        };
        let first_hour = close_hour_of_open_ms(first.open_time);
        let len = usize::try_from(close_hour_of_open_ms(last.open_time) - first_hour + 1).unwrap_or(0);
        let mut grid = Self {
            first_hour,
            open: vec![f64::NAN; len],
            close: vec![f64::NAN; len],
            high: vec![f64::NAN; len],
            low: vec![f64::NAN; len],
            quote_volume: vec![f64::NAN; len],
            ret: vec![f64::NAN; len],
        };
        for c in candles {
            let Some(i) = grid.slot(close_hour_of_open_ms(c.open_time)) else {
                continue;
            };
            grid.open[i] = c.open;
            grid.close[i] = c.close;
            grid.high[i] = c.high;
            grid.low[i] = c.low;
            grid.quote_volume[i] = c.quote_volume;
        }
        for i in 1..len {
            grid.ret[i] = (grid.close[i] / grid.close[i - 1]).ln();
        }
        grid
    }

    /// Extends the grid with missing slots (NaN) until its last slot closes at `hour`; nothing
    /// when it already does, or holds no slot.
    pub fn pad_through(&mut self, hour: i64) {
        if self.is_empty() {
            return;
        }
        let len = usize::try_from(hour - self.first_hour + 1).unwrap_or(0);
        if len > self.len() {
            for v in [
                &mut self.open,
                &mut self.close,
                &mut self.high,
                &mut self.low,
                &mut self.quote_volume,
                &mut self.ret,
            ] {
                v.resize(len, f64::NAN);
            }
        }
    }

    /// Number of slots.
    #[must_use]
    pub fn len(&self) -> usize {
        self.close.len()
    }

    /// True when the grid holds no candle.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.close.is_empty()
    }

    /// The slot whose candle closes at `hour`, if inside the grid.
    #[must_use]
    pub fn slot(&self, hour: i64) -> Option<usize> {
        usize::try_from(hour - self.first_hour)
            .ok()
            .filter(|&i| i < self.len())
    }

    /// Close hour of slot `i`.
    #[must_use]
    pub fn hour(&self, i: usize) -> i64 {
        self.first_hour + i64::try_from(i).unwrap_or(i64::MAX - self.first_hour)
    }

    /// Close hour of the last slot.
    #[must_use]
    pub fn last_hour(&self) -> i64 {
        self.first_hour + i64::try_from(self.len()).unwrap_or(0) - 1
    }

    /// Whether the candle closing in slot `i` exists.
    #[must_use]
    pub fn has_candle(&self, i: usize) -> bool {
        self.close.get(i).is_some_and(|c| !c.is_nan())
    }

    /// Slot range `[0, end)` of the slots whose close hour is at most `hour`.
    #[must_use]
    pub fn slots_until(&self, hour: i64) -> usize {
        usize::try_from(hour - self.first_hour + 1)
            .unwrap_or(0)
            .min(self.len())
    }
}

/// One asset of a panel: its id and grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    /// Asset id, e.g. `BTCUSDT`.
    pub id: String,
    /// Its hourly grid.
    pub grid: HourlyGrid,
}

/// Hours before an origin whose candles must each show trading for a forecast to be served: the
/// degenerate-market rule (README, "Degenerate markets").
pub const EVIDENCE_HOURS: usize = 24;

impl HourlyGrid {
    /// The slots among the [`EVIDENCE_HOURS`] hours up to and including `slot` whose candle shows
    /// no trading: no price range (`high == low`, an unchanged price all hour) or no quote
    /// volume. A stalled feed, a halted market or a pinned thin market looks like this, and an
    /// hour like it is no evidence of calm: a forecast on such a window is refused, never served
    /// as a low variance. Missing hours are not counted here (SPEC's 90% rule covers them).
    #[must_use]
    pub fn hours_without_trading(&self, slot: usize) -> Vec<usize> {
        let from = (slot + 1).saturating_sub(EVIDENCE_HOURS);
        (from..=slot.min(self.len().saturating_sub(1)))
            .filter(|&i| self.has_candle(i) && (self.high[i] <= self.low[i] || self.quote_volume[i] <= 0.0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::HOUR_MS;

    fn c(hour: i64, close: f64) -> Candle {
        Candle {
            open_time: hour * HOUR_MS,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
            quote_volume: 1.0,
        }
    }

    #[test]
    fn returns_never_cross_a_gap() {
        // Opens at hours 10, 11, 13: closes at 11, 12, 14; hour 13 is missing.
        let g = HourlyGrid::from_candles(&[c(10, 100.0), c(11, 110.0), c(13, 121.0)]);
        assert_eq!(g.first_hour, 11);
        assert_eq!(g.len(), 4);
        assert!(g.ret[0].is_nan());
        assert!((g.ret[1] - (1.1f64).ln()).abs() < 1e-15);
        assert!(g.ret[2].is_nan() && g.ret[3].is_nan());
        assert!(!g.has_candle(2));
        assert_eq!(g.slot(14), Some(3));
        assert_eq!(g.slot(15), None);
        assert_eq!(g.slots_until(12), 2);
        assert_eq!(g.slots_until(5), 0);
    }
}
